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
    {
        "kind": "ups_apc",
        "config": {},
        "expect_keys": {
            "online",
            "on_battery",
            "shutdown_imminent",
            "runtime_s",
            "charge_pct",
            "battery_v",
            "battery_temp_c",
            "load_pct",
            "input_v",
            "output_v",
            "outlet_countdown_s",
            # the rest of the shared UPS model (drivers/ups_model.py) but bypass
            "input_bad",
            "calibrating",
            "self_test",
            "output_off",
            "overload",
            "fault",
            "battery_needs_replacement",
        },
    },
    # --- dispenser (issue 6) ---
    {
        "kind": "dispenser",
        "config": {"rooms": {"1": "uptake1"}},
        "extra": {"areas": {"uptake1": {"name": "Uptake 1", "kind": "uptake_room"}}},
        "expect_keys": {
            "unit_state",
            "errors",
            "jobs_completed",
            "vial_radionuclide",
            "vial_activity_mbq",
            "job",
            "last",
        },
    },
    # --- radiation (issue 5) ---
    {
        "kind": "area_monitor_modbus",
        "config": {
            "profile": "area_monitor_reference",
            "word_order": "little",
            "radiation": {"normal": {"warning_usv_h": 7.5, "alarm_usv_h": 20.0}},
        },
        "expect_keys": {
            "dose_rate_usv_h",
            "over_range",
            "detector_fault",
            "fault_reason",
            "instrument_high_alarm",
            "instrument_low_alarm",
            "device_dose_usv",
        },
    },
]

# Call-bell I/O module (issue 3): one room wired, plus the alarm types its config check requires.
CASES.append(
    {
        "kind": "callbell_io",
        "config": {
            "profile": "dio16_latch",
            "rooms": {
                "uptake3": {"call": 4, "emergency": 5, "cancel": 6, "door_lamp": 2, "reassure_lamp": 3}
            },
        },
        "extra": {
            "areas": {"uptake3": {"name": "Uptake room 3", "kind": "uptake_room"}},
            "roles": {"resus": {"name": "Resus", "recipients": ["switchboard"]}},
            "ladders": {
                "det": {
                    "steps": [{"role": "resus", "timeout_s": 30, "failsafe": True, "critical_care": True}]
                }
            },
            "protocols": {
                "det": {"who": "Resus", "number": "2222", "location": "Block C", "first_actions": ["Go"]}
            },
            "alarm_types": {
                "bells.emergency": {
                    "priority": "high",
                    "kind": "clinical",
                    "latching": True,
                    "ladder": "det",
                    "protocol": "det",
                    "emergency": True,
                }
            },
        },
        "expect_keys": {"rooms"},
    }
)

# Kinds that are not Modbus (CASES stays Modbus-only: the fault matrix and the soak run it over TCP/RTU).
# Ludlum 375 (issue 5): a streaming serial instrument on a pty. It has no exception response, and
# its pty vanishes with the cable, so it works again after plug + reopen.
STREAM_CASES: list[dict] = [
    {
        "kind": "ludlum375",
        "transport": "stream",
        "config": {"location": "uptake6", "frame_period_s": 0.1, "reading_unit": "uSv/h", "sim": {"seed": 3}},
        "extra": {
            "areas": {"uptake6": {"name": "Uptake 6", "kind": "uptake_room"}},
            "radiation": {"areas": {"uptake6": {"normal": {"warning_usv_h": 7.5, "alarm_usv_h": 20.0}}}},
        },
        "expect_keys": {"dose_rate_usv_h", "detector_fault", "display_unit", "frames", "bad_frames"},
        "reopen_after_plug": True,
    }
]

# UPS from any vendor (issue 16): network kinds, run by test_network_ups_driver_contract against a real
# upsd / snmpd. Every UPS kind must return the shared UPS model's names (drivers/ups_model.py).
UPS_SHARED = {
    "on_battery",
    "online",
    "bypass",
    "input_bad",
    "calibrating",
    "self_test",
    "output_off",
    "shutdown_imminent",
    "battery_needs_replacement",
    "overload",
    "charge_pct",
    "runtime_s",
    "load_pct",
    "input_v",
    "output_v",
    "outlet_countdown_s",
}
NETWORK_UPS_CASES: list[dict] = [
    {
        "kind": "ups_nut",
        "transport": "nut",
        "config": {"ups": "contract", "timeout_s": 0.5},
        "expect_keys": UPS_SHARED | {"nut_status"},
    },
    {
        "kind": "ups_snmp",
        "transport": "snmp",
        "config": {"version": "2c", "community": "contract"},
        "expect_keys": UPS_SHARED | {"fault", "snmp_alarms"},
    },
]
