"""Shared pieces of the call-bell tests: a device config, the alarm types it needs, MQTT commands."""

from __future__ import annotations

import json
import uuid

from helpers import Watcher, free_port, wait_until

ROOMS = {
    "uptake1": {"call": 0, "emergency": 1, "cancel": 2, "door_lamp": 0, "reassure_lamp": 1},
    "uptake3": {"call": 4, "emergency": 5, "cancel": 6, "door_lamp": 2, "reassure_lamp": 3},
}


def bells_device(transport: str, tmp_path, poll_s: float = 0.05, **kw) -> dict:
    d = {
        "kind": "callbell_io",
        "name": "Nurse-call module",
        "transport": transport,
        "poll_s": poll_s,
        "timeout_s": 0.15,
        "comm_loss_after": 3,
        "profile": "dio16_latch",
        "rooms": ROOMS,
    }
    if transport == "tcp":
        d.update(host="127.0.0.1", port=free_port())
    else:
        d.update(serial_port=str(tmp_path / f"bells-{uuid.uuid4().hex[:6]}.tty"), baudrate=115200)
    d.update(kw)
    return d


def bells_extra(steps=(1.0, 1.0, 1.0)) -> dict:
    return {
        "ladders": {
            "deterioration": {
                "steps": [
                    {"role": "room_nurse", "timeout_s": steps[0]},
                    {"role": "suite_staff", "timeout_s": steps[1]},
                    {"role": "resus_team", "timeout_s": steps[2], "failsafe": True, "critical_care": True},
                ]
            },
        },
        "alarm_types": {
            "bells.call": {"priority": "medium", "kind": "clinical", "latching": True},
            "bells.emergency": {
                "priority": "high",
                "kind": "clinical",
                "latching": True,
                "emergency": True,
                "ladder": "deterioration",
                "protocol": "deterioration",
            },
        },
    }


def start_bells_suite(make_suite, watcher: Watcher, device: dict, extra: dict, edit=None):
    """A suite with one call-bell module: simulator and daemon started, first fresh poll seen.
    ``edit(suite)`` may change the config before anything starts."""
    suite = make_suite({"bells": device}, extra)
    if edit is not None:
        edit(suite)
        suite.write()
    suite.start_sims()
    suite.start_daemon(watcher)
    state_t = suite.topic("device", "bells", "state")
    watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and s["comm"] == "ok" and not s["stale"], 10, what="bells polled"
    )
    return suite


def alarm(watcher: Watcher, suite, alarm_id: str):
    return watcher.json_of(suite.topic("alarm", alarm_id))


def wait_alarm(watcher: Watcher, suite, alarm_id: str, timeout: float = 5, **fields):
    """Wait until the retained record of alarm_id has these fields; return it."""

    def ok(w):
        a = w.json_of(suite.topic("alarm", alarm_id))
        return a if a and all(a.get(k) == v for k, v in fields.items()) else None

    return watcher.wait_for(ok, timeout, what=f"alarm {alarm_id} with {fields}")


def command(watcher: Watcher, suite, actor: str, verb: str, timeout: float = 5, **body) -> dict:
    """Send cmd/<actor>/<verb> and return the daemon's reply."""
    rid = uuid.uuid4().hex
    watcher.publish(suite.topic("cmd", actor, verb), {"request_id": rid, **body})
    reply_t = suite.topic("reply", actor)

    def got(w):
        for top, payload, *_ in reversed(w.messages):
            if top == reply_t:
                r = json.loads(payload)
                if r.get("request_id") == rid:
                    return r
        return None

    return watcher.wait_for(got, timeout, what=f"reply to {verb}")


def notifies(watcher: Watcher, suite, alarm_id: str) -> list[tuple[str, dict, float]]:
    """(role, payload, arrival time) of every notification received for alarm_id."""
    prefix = suite.topic("notify") + "/"
    out = []
    for top, payload, _, t in list(watcher.messages):
        if top.startswith(prefix):
            body = json.loads(payload)
            if body["alarm_id"] == alarm_id:
                out.append((top[len(prefix) :], body, t))
    return out


def sim_reads(suite, device: str = "bells") -> int:
    return suite.sim(device, "get")["input_reads"]


def wait_polls(suite, n: int, device: str = "bells", timeout: float = 5) -> None:
    """Wait until the daemon has polled the module n more times (a condition, not a sleep)."""
    start = sim_reads(suite, device)
    wait_until(lambda: sim_reads(suite, device) >= start + n, timeout, what=f"{n} polls")
