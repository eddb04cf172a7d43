"""The fault matrix: every Modbus device kind, on RTU and on TCP, all simulators at once.

For each device and each fault (no answer, slow answer past the timeout, CRC errors, exception
responses, garbage bytes, cable pulled and put back): the device's technical alarm is raised within
its bound and published over a real broker, recovery clears it, no other device's polling is delayed
(the runners count late polls), and nothing crashes.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import Suite
from contract_cases import CASES
from helpers import Watcher, deep_merge, free_port

POLL, TIMEOUT, AFTER = 0.25, 0.15, 3
SLOW_KINDS = {"ups_apc": 0.6}  # 9 requests with 35 ms between frames: a slower cycle of its own
FAULTS = {
    "no_answer": {"silent": True},
    "slow_answer": {"delay_s": 0.6},
    "crc_error": {"corrupt_crc": True},
    "exception": {"exception": 4},
    "garbage": {"garbage": 9},
    "cable_pulled": None,  # unplug / plug
}
DEVICES = [(c, t) for c in CASES for t in ("tcp", "rtu")]


def device_id(case, transport) -> str:
    return f"{case['kind']}_{transport}"


def bound(kind: str) -> float:
    poll = SLOW_KINDS.get(kind, POLL)
    # comm_loss_after polls, each ending at its deadline, plus slack for a loaded 2-core machine.
    return AFTER * poll + TIMEOUT * 4 + 0.5 + 2.5


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, broker):
    devices, extra = {}, {}
    tmp = tmp_path_factory.mktemp("matrix")
    for case, transport in DEVICES:
        dev = {
            "kind": case["kind"],
            "transport": transport,
            "poll_s": SLOW_KINDS.get(case["kind"], POLL),
            "timeout_s": TIMEOUT,
            "comm_loss_after": AFTER,
            **case["config"],
        }
        if case["kind"] == "callbell_io" and transport == "rtu":
            # A room is served by one bell module: the RTU twin wires another room.
            dev["rooms"] = {"uptake1": dev["rooms"]["uptake3"]}
        if transport == "tcp":
            dev.update(host="127.0.0.1", port=free_port())
        else:  # each device on its own line, so one device's fault cannot legitimately hold up another
            dev.update(serial_port=str(tmp / f"{device_id(case, transport)}.tty"), baudrate=115200)
        devices[device_id(case, transport)] = dev
        extra = deep_merge(extra, case.get("extra", {}))
    suite = Suite(tmp, broker, devices, extra)
    watcher = Watcher(broker.port)
    suite.start_sims()
    suite.start_daemon(watcher)
    for did in devices:
        watcher.wait_for(
            lambda w, d=did: (s := w.json_of(suite.topic("device", d, "state"))) and s["comm"] == "ok",
            20,
            what=f"{did} answering",
        )
    yield suite, watcher, list(devices)
    watcher.close()
    suite.close()


def counters(suite, watcher) -> dict:
    """The daemon's counters now, through the `status` command."""
    rid = f"m{time.monotonic_ns()}"
    watcher.publish(suite.topic("cmd", "matrix", "status"), {"request_id": rid})
    topic = suite.topic("reply", "matrix")

    def reply(w):
        for t, p, *_ in reversed(w.messages):
            if t == topic and (r := json.loads(p)).get("request_id") == rid:
                return r
        return None

    return watcher.wait_for(reply, 10, what="status reply")["result"]["counters"]


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("case,transport", DEVICES, ids=[device_id(c, t) for c, t in DEVICES])
def test_fault_raises_the_technical_alarm_in_bound_and_recovery_clears_it(matrix, case, transport, fault):
    suite, watcher, all_devices = matrix
    did = device_id(case, transport)
    alarm_t = suite.topic("alarm", f"{did}.comm_lost")
    before = counters(suite, watcher)
    t0 = time.monotonic()
    if FAULTS[fault] is None:
        suite.sim(did, "unplug")
    else:
        suite.sim(did, "fault", **FAULTS[fault])
    try:
        rec = watcher.wait_for(
            lambda w: (a := w.json_of(alarm_t)) and a["state"] == "active" and a["raised_at"] and a,
            bound(case["kind"]) + 10,
            what=f"{did} alarm",
        )
        took = time.monotonic() - t0
        assert took <= bound(case["kind"]), f"{did}/{fault}: alarm after {took:.2f} s"
        assert rec["kind"] == "technical" and rec["priority"] == "high"
        state = watcher.wait_for(
            lambda w: (s := w.json_of(suite.topic("device", did, "state"))) and s["stale"] and s,
            5,
            what="stale state",
        )
        assert state["comm"] == "lost"
    finally:
        if FAULTS[fault] is None:
            suite.sim(did, "plug")
        else:
            suite.sim(did, "clear")
    watcher.wait_for(lambda w: w.json_of(alarm_t)["state"] == "closed", 15, what=f"{did} recovery")
    watcher.wait_for(
        lambda w: not w.json_of(suite.topic("device", did, "state"))["stale"], 10, what="fresh again"
    )
    after = counters(suite, watcher)
    for other in all_devices:
        if other == did:
            continue
        key = f"device.{other}.late_polls"
        assert after.get(key, 0) == before.get(key, 0), f"{other} was held up while {did} had {fault}"
        st = watcher.json_of(suite.topic("device", other, "state"))
        assert st["comm"] == "ok", f"{other} lost while {did} had {fault}"
