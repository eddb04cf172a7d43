"""Uptake timers through the real daemon: ready for scan, overdue, freeing the room, surviving a restart."""

from __future__ import annotations

import json

import pytest
from dose_fixtures import alarm, dispenser, events, extra, patient, records, wait_alarm, wait_records

from suitemon.daemon.alarms import parse_iso


def start(make_suite, watcher, tmp_path, uptake):
    suite = make_suite({"disp": dispenser(tmp_path)}, extra(uptake=uptake))
    suite.start_sims()
    daemon = suite.start_daemon(watcher)
    watcher.wait_for(
        lambda w: (s := w.json_of(suite.topic("device", "disp", "state"))) and s["comm"] == "ok",
        10,
        what="dispenser answering",
    )
    return suite, daemon


def room_state(watcher, suite, room):
    return watcher.json_of(suite.topic("uptake", room))


def test_ready_for_scan_then_overdue_then_freed_by_command(make_suite, watcher, tmp_path):
    suite, _ = start(
        make_suite, watcher, tmp_path, {"uptake_s": 2.0, "overdue_s": 4.0, "state_period_s": 1.0}
    )
    site = suite.site
    assert (
        room_state(watcher, suite, "uptake3") is None
        or room_state(watcher, suite, "uptake3")["state"] == "idle"
    )
    suite.sim("disp", "administer", **patient(1, room=3), ago_s=0)
    rec = wait_records(watcher, site, 1)[0]
    t_adm = parse_iso(rec["administered_at"])

    occ = watcher.wait_for(
        lambda w: [e for e in events(w, site, "occupancy.changed") if e["data"]["occupied"]],
        5,
        what="room occupied",
    )[0]["data"]
    assert occ["area"] == "uptake3" and occ["source"] == "dose:disp-1001"
    assert occ["activity_mbq"] == pytest.approx(rec["administered_mbq"])
    waiting = watcher.wait_for(
        lambda w: (s := room_state(w, suite, "uptake3")) and s["state"] == "waiting" and s,
        5,
        what="room waiting",
    )
    assert waiting["record_id"] == "disp-1001" and waiting["patient_ref"] == "P0001"
    assert 0 <= waiting["remaining_s"] <= 2.0

    ready_t = suite.topic("uptake", "uptake3", "ready")
    msg = watcher.wait_for(
        lambda w: [json.loads(p) for t, p, *_ in w.messages if t == ready_t], 8, what="ready for scan"
    )[0]
    assert msg["role"] == "scanner_team" and msg["recipients"] == ["radiographer1", "radiographer2"]
    assert msg["patient_ref"] == "P0001" and "ready for scan" in msg["message"]
    assert parse_iso(msg["ts"]) >= t_adm + 2.0  # never early
    assert parse_iso(msg["ts"]) - (t_adm + 2.0) < 2.5  # and not much late, even on a loaded machine
    watcher.wait_for(lambda w: room_state(w, suite, "uptake3")["state"] == "ready", 5, what="state ready")

    over = wait_alarm(watcher, site, "uptake.uptake3.overdue", timeout=8, state="active")
    assert over["priority"] == "medium" and over["location"] == "uptake3"
    assert parse_iso(over["raised_at"]) >= t_adm + 4.0
    watcher.wait_for(lambda w: room_state(w, suite, "uptake3")["state"] == "overdue", 5, what="state overdue")

    # The patient has been scanned and left: a radiographer frees the room.
    watcher.publish(
        suite.topic("cmd", "radiographer1", "occupancy"),
        {"area": "uptake3", "occupied": False, "reason": "scanned, left"},
    )
    wait_alarm(watcher, site, "uptake.uptake3.overdue", state="closed")
    ended = watcher.wait_for(lambda w: events(w, site, "uptake.ended"), 5, what="uptake ended")[0]["data"]
    assert ended["record_id"] == "disp-1001" and ended["was_ready"] is True
    watcher.wait_for(lambda w: room_state(w, suite, "uptake3")["state"] == "idle", 5, what="state idle")
    assert len([e for e in events(watcher, site, "uptake.ready")]) == 1


def test_timers_and_records_survive_a_daemon_restart(make_suite, watcher, tmp_path):
    suite, daemon = start(make_suite, watcher, tmp_path, {"uptake_s": 8.0, "overdue_s": 60.0})
    site = suite.site
    suite.sim("disp", "administer", **patient(1, room=1), ago_s=0)
    rec = wait_records(watcher, site, 1)[0]
    watcher.wait_for(lambda w: events(w, site, "uptake.started"), 5, what="clock started")
    daemon.kill9()  # no goodbye: the journal is all the next process has

    # While suitemon is down the unit keeps working: two more administrations.
    suite.sim("disp", "burst", jobs=[dict(patient(2, room=3), ago_s=0), dict(patient(3, room=3), ago_s=0)])
    suite.start_daemon(watcher, name="daemon2")
    recs = wait_records(watcher, site, 3)
    assert [r["record_id"] for r in recs] == ["disp-1001", "disp-1002", "disp-1003"]  # each once, in order

    # Room 1's clock went on from its administration time, not from the restart.
    ready_t = suite.topic("uptake", "uptake1", "ready")
    msg = watcher.wait_for(
        lambda w: [json.loads(p) for t, p, *_ in w.messages if t == ready_t], 15, what="ready after restart"
    )[0]
    assert parse_iso(msg["ts"]) >= parse_iso(rec["administered_at"]) + 8.0
    assert msg["record_id"] == "disp-1001"
    # Room 3: 1003 replaced 1002 (the unit says a new patient was injected there).
    ended = watcher.wait_for(lambda w: events(w, site, "uptake.ended"), 5, what="1002 superseded")[0]["data"]
    assert ended["record_id"] == "disp-1002" and "superseded" in ended["reason"]
    watcher.wait_for(
        lambda w: (s := room_state(w, suite, "uptake3")) and s.get("record_id") == "disp-1003",
        5,
        what="room 3 timing 1003",
    )
    assert len(records(watcher, site)) == 3
    assert alarm(watcher, site, "uptake.uptake1.overdue") is None
