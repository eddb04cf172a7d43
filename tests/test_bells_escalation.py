"""Deterioration alerts through the whole system: button press -> ladder on notify/<role> -> accept/reject
over MQTT, including a daemon killed with SIGKILL mid-ladder and restarted."""

from __future__ import annotations

import sqlite3
import time

import pytest
from bells_helpers import bells_device, bells_extra, command, notifies, wait_alarm, wait_polls
from conftest import events_of
from helpers import wait_until

AID = "bells.uptake3.emergency"


def start(make_suite, watcher, tmp_path, transport="tcp", steps=(1.0, 1.0, 1.0)):
    suite = make_suite({"bells": bells_device(transport, tmp_path)}, bells_extra(steps))
    suite.start_sims()
    daemon = suite.start_daemon(watcher)
    state_t = suite.topic("device", "bells", "state")
    watcher.wait_for(lambda w: (s := w.json_of(state_t)) and s["comm"] == "ok", 10, what="bells polled")
    return suite, daemon


def steps_seen(watcher, suite):
    return [(role, body["step"]) for role, body, _ in notifies(watcher, suite, AID)]


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_emergency_nobody_accepts_reaches_failsafe_on_schedule(transport, make_suite, watcher, tmp_path):
    suite, _ = start(make_suite, watcher, tmp_path, transport)
    suite.sim("bells", "press", room="uptake3", button="emergency", hold_s=0.05)
    rec = wait_alarm(watcher, suite, AID, 3, state="active")
    assert rec["priority"] == "high" and rec["kind"] == "clinical" and rec["latching"] is True
    watcher.wait_for(lambda w: len(notifies(w, suite, AID)) >= 3, 6, what="failsafe step")
    n = notifies(watcher, suite, AID)
    assert [(role, b["step"]) for role, b, _ in n[:3]] == [
        ("room_nurse", 0),
        ("suite_staff", 1),
        ("resus_team", 2),
    ]
    assert [b["reason"] for _, b, _ in n[:3]] == ["raised", "timeout", "timeout"]
    t0 = n[0][2]
    for k in (1, 2):  # 1 s per step, with a margin for a loaded machine
        assert 1.0 * k - 0.1 <= n[k][2] - t0 <= 1.0 * k + 0.5, [t - t0 for *_, t in n]
    for _, body, _ in n:
        p = body["protocol"]
        assert p["who"] == "Resus team" and p["number"] == "2222" and p["location"] == "PET-CT, Block C"
        assert p["room"] == "Uptake 3" and p["first_actions"][0] == "Stay with the patient"
        assert body["location"] == "uptake3" and body["priority"] == "high"
    assert n[2][1]["recipients"] == ["switchboard"]
    # every step is a journal event, and the failsafe repeats until someone accepts
    watcher.wait_for(lambda w: len(notifies(w, suite, AID)) >= 4, 3, what="failsafe repeat")
    assert notifies(watcher, suite, AID)[3][1]["reason"] == "repeat"

    def notify_events(w):
        return [e for e in events_of(w, suite.site, "alarm.notify") if e["alarm_id"] == AID]

    ev = watcher.wait_for(
        lambda w: len(notify_events(w)) >= 4 and notify_events(w), 3, what="4 notify events"
    )
    assert [e["data"]["step"] for e in ev[:4]] == [0, 1, 2, 2]
    # the lamp is lit the whole time
    assert suite.sim("bells", "lamps", room="uptake3")["uptake3"] == {
        "door_lamp": True,
        "reassure_lamp": True,
    }


def test_all_reject_escalates_at_once_and_accept_stops(make_suite, watcher, tmp_path):
    suite, _ = start(make_suite, watcher, tmp_path, steps=(30, 30, 30))
    suite.sim("bells", "press", room="uptake3", button="emergency", hold_s=0.05)
    watcher.wait_for(lambda w: steps_seen(w, suite) == [("room_nurse", 0)], 3, what="step 0")
    r = command(watcher, suite, "nurse1", "reject", alarm_id=AID, reason="with a patient in uptake 5")
    assert r["ok"], r
    r = command(watcher, suite, "porter", "reject", alarm_id=AID)  # not a recipient: does not count
    assert r["ok"], r
    assert steps_seen(watcher, suite) == [("room_nurse", 0)]
    t = time.monotonic()
    r = command(watcher, suite, "nurse2", "reject", alarm_id=AID)
    assert r["ok"], r
    watcher.wait_for(lambda w: len(steps_seen(w, suite)) == 2, 3, what="step 1 after all rejected")
    assert time.monotonic() - t < 1.0  # at once, not after the 30 s timeout
    n = notifies(watcher, suite, AID)
    assert (
        n[1][0] == "suite_staff"
        and n[1][1]["reason"] == "all_rejected"
        and n[1][1]["protocol"]["number"] == "2222"
    )
    r = command(watcher, suite, "rad1", "accept", alarm_id=AID)
    assert r["ok"], r
    rec = wait_alarm(watcher, suite, AID, 3, state="acknowledged")
    assert rec["escalation"]["accepted_by"] == "rad1" and rec["escalation"]["step"] == 1
    r = command(watcher, suite, "nurse1", "accept", alarm_id=AID)
    assert not r["ok"] and "already accepted by rad1" in r["error"]
    r = command(watcher, suite, "nurse1", "reject", alarm_id=AID)
    assert not r["ok"] and "no open notification" in r["error"]
    r = command(watcher, suite, "nurse1", "accept", alarm_id="bells.uptake1.emergency")
    assert not r["ok"] and "no open alarm" in r["error"]
    r = command(watcher, suite, "nurse1", "accept")
    assert not r["ok"] and "missing field" in r["error"]
    types = [(e["type"], e["actor"]) for e in events_of(watcher, suite.site) if e["alarm_id"] == AID]
    assert ("alarm.rejected", "nurse1") in types and ("alarm.rejected", "nurse2") in types
    assert ("alarm.accepted", "rad1") in types
    # accepted: the lamp stays until the room cancels
    wait_polls(suite, 5)
    assert suite.sim("bells", "lamps", room="uptake3")["uptake3"]["door_lamp"] is True
    r = command(watcher, suite, "nurse1", "reject", alarm_id=AID, reason=5)
    assert not r["ok"] and "reason must be a string" in r["error"]
    suite.sim("bells", "press", room="uptake3", button="cancel", hold_s=0.05)
    wait_alarm(watcher, suite, AID, 3, state="closed", closed_by="cancel@uptake3")
    assert len(steps_seen(watcher, suite)) == 2
    r = command(watcher, suite, "rad1", "accept", alarm_id=AID)
    assert not r["ok"] and "no open alarm" in r["error"]
    # a call has no ladder here: nothing to accept, but it can be acknowledged
    suite.sim("bells", "press", room="uptake1", button="call", hold_s=0.05)
    wait_alarm(watcher, suite, "bells.uptake1.call", 3, state="active")
    r = command(watcher, suite, "nurse1", "accept", alarm_id="bells.uptake1.call")
    assert not r["ok"] and "no notification to accept" in r["error"]
    rejected = [e for e in events_of(watcher, suite.site, "command.rejected")]
    assert len(rejected) >= 6  # every refused command is journaled


def test_ack_does_not_stop_an_emergency_ladder(make_suite, watcher, tmp_path):
    suite, _ = start(make_suite, watcher, tmp_path, steps=(0.6, 0.6, 30))
    suite.sim("bells", "press", room="uptake3", button="emergency", hold_s=0.05)
    watcher.wait_for(lambda w: len(steps_seen(w, suite)) == 1, 3, what="step 0")
    assert command(watcher, suite, "nurse1", "ack", alarm_id=AID)["ok"]
    watcher.wait_for(lambda w: len(steps_seen(w, suite)) >= 3, 4, what="ladder goes on after ack")
    assert steps_seen(watcher, suite)[:3] == [("room_nurse", 0), ("suite_staff", 1), ("resus_team", 2)]


def delivered_upto(suite) -> int:
    db = sqlite3.connect(f"file:{suite.tmp / 'state' / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        upto = db.execute("SELECT upto FROM delivery").fetchone()[0]
        last = db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        return upto >= last
    finally:
        db.close()


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_sigkill_mid_ladder_resumes_at_the_right_step_without_renotifying(
    transport, make_suite, watcher, tmp_path
):
    step = 2.5
    suite, daemon = start(make_suite, watcher, tmp_path, transport, steps=(step, step, 30))
    suite.sim("bells", "press", room="uptake3", button="emergency", hold_s=0.05)
    watcher.wait_for(lambda w: len(steps_seen(w, suite)) == 2, step + 3, what="step 1")
    rec = wait_alarm(watcher, suite, AID, 3, state="active")
    deadline = rec["escalation"]["deadline"]
    wait_until(lambda: delivered_upto(suite), 5, what="every event delivered (cursor committed)")
    daemon.kill9()
    killed_at = time.time()
    suite.start_daemon(watcher, name="daemon2")
    online_at = time.time()
    watcher.wait_for(lambda w: len(steps_seen(w, suite)) >= 3, step + 5, what="step 2 after restart")
    n = notifies(watcher, suite, AID)
    assert [(role, b["step"]) for role, b, _ in n] == [
        ("room_nurse", 0),
        ("suite_staff", 1),
        ("resus_team", 2),
    ]
    from suitemon.daemon.alarms import parse_iso

    arrived = time.time() - (time.monotonic() - n[2][2])
    due = parse_iso(deadline)
    assert arrived >= due - 0.05, "step 2 came before step 1's deadline"
    assert arrived <= max(due, online_at) + 1.0, (arrived - due, online_at - due, killed_at - due)

    # nothing earlier was told again: one notify event per step, each delivered once
    def notify_events(w):
        return [e for e in events_of(w, suite.site, "alarm.notify") if e["alarm_id"] == AID]

    ev = watcher.wait_for(lambda w: len(notify_events(w)) >= 3 and notify_events(w), 3, what="step 2 event")
    assert [e["data"]["step"] for e in ev] == [0, 1, 2]
    assert len({e["event_id"] for e in ev}) == 3
    # the restarted daemon still drives the lamp and the room can still cancel
    assert suite.sim("bells", "lamps", room="uptake3")["uptake3"]["door_lamp"] is True
    # A person's press (0.3 s): a 50 ms one can fall between two RTU polls of a module that does not latch.
    suite.sim("bells", "press", room="uptake3", button="cancel", hold_s=0.3)
    wait_alarm(watcher, suite, AID, 5, state="closed")


def test_staff_raised_deterioration_with_news2(make_suite, watcher, tmp_path):
    suite, _ = start(make_suite, watcher, tmp_path, steps=(30, 30, 30))
    r = command(watcher, suite, "rad1", "deteriorate", room="uptake3", news2=8, note="SpO2 88%")
    assert r["ok"], r
    assert r["result"]["news2_band"] == "high" and r["result"]["step"] == 2
    # a momentary cause, like a press: latched on, condition already absent so it can be reset
    rec = wait_alarm(watcher, suite, AID, 3, state="active", condition="absent")
    assert rec["details"]["origin"] == "staff" and rec["details"]["raised_by"] == "rad1"
    assert rec["details"]["news2"] == 8 and rec["details"]["note"] == "SpO2 88%"
    watcher.wait_for(
        lambda w: steps_seen(w, suite) == [("resus_team", 2)], 3, what="critical-care step first"
    )
    wait_until(lambda: suite.sim("bells", "lamps", room="uptake3")["uptake3"]["door_lamp"], 3, what="lamp on")

    r = command(watcher, suite, "nurse1", "deteriorate", room="uptake1", news2=5)
    assert r["ok"] and r["result"]["step"] == 0 and r["result"]["news2_band"] == "medium", r
    r = command(watcher, suite, "nurse1", "deteriorate", room="uptake1", news2=9)  # worse: jump up
    assert r["ok"] and r["result"]["moved"] is True and r["result"]["already_open"] is True, r
    watcher.wait_for(lambda w: len(notifies(w, suite, "bells.uptake1.emergency")) == 2, 3, what="jump")
    roles = [
        (role, b["step"], b["reason"]) for role, b, _ in notifies(watcher, suite, "bells.uptake1.emergency")
    ]
    assert roles == [("room_nurse", 0, "raised"), ("resus_team", 2, "news2")]

    for bad in ({"news2": 21}, {"news2": "high"}, {"news2": True}, {"single_parameter_3": "yes"}):
        r = command(watcher, suite, "nurse1", "deteriorate", room="uptake3", **bad)
        assert not r["ok"], (bad, r)
    r = command(watcher, suite, "nurse1", "deteriorate", room="kitchen")
    assert not r["ok"] and "no call bell in room" in r["error"]
    # a staff-raised alert is closed like a pressed one: in the room, never by a remote reset
    r = command(watcher, suite, "rad1", "reset", alarm_id=AID, note="patient transferred to resus")
    assert not r["ok"] and "cancel button in the room" in r["error"], r
    suite.sim("bells", "press", room="uptake3", button="cancel", hold_s=0.02)
    wait_alarm(watcher, suite, AID, 3, state="closed", closed_by="cancel@uptake3")
