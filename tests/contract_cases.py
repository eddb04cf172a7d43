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
]

# Call-bell I/O module (issue 3): one room wired, plus the alarm types its config check requires.
CASES.append({
    "kind": "callbell_io",
    "config": {"profile": "dio16_latch",
               "rooms": {"uptake3": {"call": 4, "emergency": 5, "cancel": 6, "door_lamp": 2, "reassure_lamp": 3}}},
    "extra": {
        "areas": {"uptake3": {"name": "Uptake room 3", "kind": "uptake_room"}},
        "roles": {"resus": {"name": "Resus", "recipients": ["switchboard"]}},
        "ladders": {"det": {"steps": [{"role": "resus", "timeout_s": 30, "failsafe": True, "critical_care": True}]}},
        "protocols": {"det": {"who": "Resus", "number": "2222", "location": "Block C", "first_actions": ["Go"]}},
        "alarm_types": {"bells.emergency": {"priority": "high", "kind": "clinical", "latching": True,
                                            "ladder": "det", "protocol": "det", "emergency": True}},
    },
    "expect_keys": {"rooms"},
})
