"""Every simulated device kind for the soak, polled ten times faster than the example suite.

The example suite polls area monitors and the dispenser every 1 s and the UPS every 1.5 s; here they
poll every 0.1-0.15 s. The call-bell module already polls at 50 ms, so its events are multiplied
instead: the soak presses and cancels a bell every few seconds.
"""

from __future__ import annotations

from contract_cases import CASES

TEN_X = {"ups_apc": 0.15, "callbell_io": 0.05}


def soak_extra_devices(free_port) -> dict:
    devices = {}
    for case in CASES:
        kind = case["kind"]
        if kind == "modbus_points":
            continue  # the soak's own flapping sensors
        devices[f"soak_{kind}"] = {
            "kind": kind,
            "transport": "tcp",
            "host": "127.0.0.1",
            "port": free_port(),
            "poll_s": TEN_X.get(kind, 0.1),
            "timeout_s": 0.1,
            **case["config"],
        }
    return devices


def soak_extra_config() -> dict:
    from helpers import deep_merge

    extra: dict = {}
    for case in CASES:
        extra = deep_merge(extra, case.get("extra", {}))
    return extra


def stimulate(suite, i: int) -> None:
    """Events at ten times the normal rate: a call and its cancel every cycle."""
    suite.sim("soak_callbell_io", "press", room="uptake3", button="call", hold_s=0.2)
    suite.sim("soak_callbell_io", "press", room="uptake3", button="cancel", hold_s=0.2)
