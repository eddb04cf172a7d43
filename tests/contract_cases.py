"""One row per device kind for the shared driver contract suite (tests/test_driver_contract.py).

A row names the kind, the device config it needs beyond the transport fields, and the
value keys a good poll must return. Adding a kind = adding a row here.
"""

from __future__ import annotations

CASES: list[dict] = [
    {
        "kind": "modbus_points",
        "config": {"profile": "generic_io"},
        "expect_keys": {"temperature", "humidity", "counter", "status", "door_contact"},
    },
    # --- dispenser (issue 6) ---
    {
        "kind": "dispenser",
        "config": {"rooms": {"1": "uptake1"}},
        "extra": {"areas": {"uptake1": {"name": "Uptake 1", "kind": "uptake_room"}}},
        "expect_keys": {"unit_state", "errors", "jobs_completed", "vial_radionuclide", "vial_activity_mbq",
                        "job", "last"},
    },
    # --- radiation (issue 5) ---
    {
        "kind": "area_monitor_modbus",
        "config": {"profile": "area_monitor_reference", "word_order": "little",
                   "radiation": {"normal": {"warning_usv_h": 7.5, "alarm_usv_h": 20.0}}},
        "expect_keys": {"dose_rate_usv_h", "over_range", "detector_fault", "fault_reason",
                        "instrument_high_alarm", "instrument_low_alarm", "device_dose_usv"},
    },
]
