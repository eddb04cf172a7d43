"""Call bells are reset in the room (issue 15, item 2; UL 1069, hazard H1).

Probe: a call button is pressed and released (a momentary button reads absent at once), then
someone far away sends ``reset``: today the call closes and the over-door lamp goes out with
nobody in the room. Now the reset is refused and the lamp stays on until the cancel button in
the room is pressed; only a configured engineer role may force-close, with a reason, and only
while the room's module is faulty; the journal says so.
"""

from __future__ import annotations

from bells_helpers import bells_device, bells_extra, command, start_bells_suite, wait_alarm, wait_polls
from conftest import events_of
from helpers import deep_merge

ROLES = {
    "room_nurse": {"name": "Room nurse", "recipients": ["nurse1", "nurse2"], "commands": ["ack", "reset"]},
    "engineer": {"name": "Clinical engineering", "members": ["eng9"], "commands": ["force_close"]},
}


def start(make_suite, watcher, tmp_path):
    # No blanket test grant: nurse1 may ack and reset, no more.
    return start_bells_suite(
        make_suite,
        watcher,
        bells_device("tcp", tmp_path),
        deep_merge(bells_extra(), {"roles": ROLES}),
        edit=lambda suite: suite.data["roles"].pop("operators"),
    )


def door_lamp(suite, room="uptake1") -> bool:
    return suite.sim("bells", "lamps", room=room)[room]["door_lamp"]


def test_remote_reset_of_a_call_is_refused_and_only_the_room_closes_it(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, tmp_path)
    for button in ("call", "emergency"):
        aid = f"bells.uptake1.{button}"
        suite.sim("bells", "press", room="uptake1", button=button, hold_s=0.02)
        wait_alarm(watcher, suite, aid, 3, state="active", condition="absent")  # released at once
        r = command(watcher, suite, "nurse1", "reset", alarm_id=aid, note="looked on the camera")
        assert not r["ok"] and "closed by the cancel button in the room" in r["error"], r
        # An engineer may not force-close while the module works: the room can cancel.
        r = command(watcher, suite, "eng9", "force_close", alarm_id=aid, reason="remote tidy-up of alarms")
        assert not r["ok"] and "is working" in r["error"], r
    wait_polls(suite, 5)
    assert door_lamp(suite)
    for button in ("call", "emergency"):
        assert watcher.json_of(suite.topic("alarm", f"bells.uptake1.{button}"))["state"] == "active"
    rejected = events_of(watcher, suite.site, "command.rejected")
    assert [e["data"]["verb"] for e in rejected if e["actor"] == "nurse1"] == ["reset", "reset"]
    suite.sim("bells", "press", room="uptake1", button="cancel", hold_s=0.02)
    for button in ("call", "emergency"):
        wait_alarm(watcher, suite, f"bells.uptake1.{button}", 3, state="closed", closed_by="cancel@uptake1")
    wait_polls(suite, 3)
    assert not door_lamp(suite)


def test_engineer_force_closes_with_a_reason_only_when_the_module_is_faulty(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, tmp_path)
    aid = "bells.uptake3.call"
    suite.sim("bells", "press", room="uptake3", button="call", hold_s=0.02)
    wait_alarm(watcher, suite, aid, 3, state="active")
    suite.sim("bells", "fault", silent=True)  # the module stops answering: no cancel can be read
    wait_alarm(watcher, suite, "bells.comm_lost", 5, state="active")
    # Not granted to the nurse; the engineer needs a reason.
    r = command(
        watcher, suite, "nurse1", "force_close", alarm_id=aid, reason="module dead, patient gone home"
    )
    assert not r["ok"] and "grants 'force_close'" in r["error"], r
    r = command(watcher, suite, "eng9", "force_close", alarm_id=aid, reason="ok")
    assert not r["ok"] and "needs a reason" in r["error"], r
    r = command(
        watcher, suite, "eng9", "force_close", alarm_id=aid, reason="module dead, patient seen and gone home"
    )
    assert r["ok"] and r["result"]["type"] == "alarm.force_closed", r
    assert "not answering" in r["result"]["fault"]
    rec = wait_alarm(watcher, suite, aid, 3, state="closed", closed_by="eng9")
    assert rec["closed_reason"].startswith("force-closed: module dead")
    ev = watcher.wait_for(lambda w: [e for e in events_of(w, suite.site, "alarm.force_closed")], 5)[0]
    assert ev["actor"] == "eng9" and ev["data"]["reason"] == "module dead, patient seen and gone home"
    assert "not answering" in ev["data"]["fault"]
    rules = {e["actor"]: e["data"].get("rule") for e in events_of(watcher, suite.site, "command.rejected")}
    assert rules == {"nurse1": "default-deny", "eng9": None}
