"""Dispenser end to end: simulator process (Modbus TCP / RTU) -> daemon process -> real Mosquitto.

Each dose check raises its own latched, per-administration alarm; unit error bits map to
alarms; two completions between polls are both recorded; a silent unit raises comm loss.
"""

from __future__ import annotations

import json

import pytest
from dose_fixtures import alarm, dispenser, events, extra, patient, records, wait_alarm, wait_records


def start(make_suite, watcher, tmp_path, transport="tcp", **dev):
    suite = make_suite({"disp": dispenser(tmp_path, transport, **dev)}, extra())
    suite.start_sims()
    suite.start_daemon(watcher)
    state_t = suite.topic("device", "disp", "state")
    watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and s["comm"] == "ok" and not s["stale"],
        10,
        what="fresh dispenser state",
    )
    return suite


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_each_check_raises_its_own_latched_alarm(make_suite, watcher, tmp_path, transport):
    suite = start(make_suite, watcher, tmp_path, transport)
    site = suite.site
    suite.sim("disp", "administer", **patient(1, room=1, mbq=300, weight=95))  # 1001: all good
    suite.sim("disp", "over_tolerance", pct=15)
    suite.sim("disp", "administer", **patient(2, room=3, mbq=250, weight=95))  # 1002: +15 %
    suite.sim("disp", "administer", **patient(3, room=1, mbq=300, weight=60))  # 1003: 5 MBq/kg
    suite.sim("disp", "over_tolerance", pct=400)
    suite.sim("disp", "administer", **patient(4, room=3, mbq=300, weight=120))  # 1004: 28.5 mSv, 5.7 intended
    suite.sim("disp", "administer", **patient(5, room=1, mbq=150, exam="PSMA"))  # 1005: FDG for a PSMA exam
    suite.sim("disp", "next_residual", mbq=20)
    suite.sim("disp", "administer", **patient(6, room=3, mbq=300, weight=95))  # 1006: 6.7 % residual
    recs = {r["record_id"]: r for r in wait_records(watcher, site, 6)}
    assert sorted(recs) == [f"disp-{j}" for j in range(1001, 1007)]

    failed = {rid: {c["check"] for c in r["checks"] if c["ok"] is False} for rid, r in recs.items()}
    assert failed == {
        "disp-1001": set(),
        "disp-1002": {"tolerance"},
        "disp-1003": {"reference_level"},
        "disp-1004": {"tolerance", "reference_level", "notifiable"},
        "disp-1005": {"radiopharmaceutical", "notifiable"},
        "disp-1006": {"residual"},
    }
    expected = {
        "disp-1002.tolerance": "medium",
        "disp-1003.reference_level": "medium",
        "disp-1004.notifiable": "high",
        "disp-1004.reference_level": "medium",
        "disp-1005.radiopharmaceutical": "high",
        "disp-1005.notifiable": "high",
        "disp-1006.residual": "low",
    }
    for suffix, priority in expected.items():
        a = wait_alarm(watcher, site, f"dose.{suffix}", state="active", condition="absent")
        assert a["priority"] == priority and a["latching"] is True, a
        assert a["details"]["record_id"] == suffix.split(".")[0]
    notifiable = alarm(watcher, site, "dose.disp-1004.notifiable")
    assert notifiable["location"] == "uptake3" and notifiable["details"]["criterion"] == "2.3"
    assert (
        alarm(watcher, site, "dose.disp-1005.notifiable")["details"]["criterion"]
        == "wrong_radiopharmaceutical"
    )
    assert not [
        e for e in events(watcher, site, "alarm.raised") if e["alarm_id"].startswith("dose.disp-1001")
    ]

    good = recs["disp-1001"]
    assert (
        good["room"] == "uptake1" and good["radionuclide"] == "F-18" and good["radiopharmaceutical"] == "FDG"
    )
    assert good["administered_mbq"] == pytest.approx(300, rel=0.05)
    assert good["measured_mbq"] > good["administered_mbq"]  # drawn earlier, decays to the prescription
    assert good["effective_dose_msv"] == pytest.approx(good["administered_mbq"] * 0.019, rel=1e-3)
    assert good["operator"] == "tech1" and good["device"] == "disp" and good["job"] == 1001
    assert "name" not in str(sorted(good)) and "birth" not in str(sorted(good))

    # A person acknowledges and resets a latched dose alarm; it then closes.
    watcher.publish(
        suite.topic("cmd", "rps", "reset"),
        {"alarm_id": "dose.disp-1005.radiopharmaceutical", "note": "reported to the regulator"},
    )
    closed = wait_alarm(watcher, site, "dose.disp-1005.radiopharmaceutical", state="closed")
    assert closed["closed_by"] == "rps"


def test_unit_error_bits_map_to_alarms_and_spill_latches(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, tmp_path)
    site = suite.site
    suite.sim("disp", "error", spill=True, door_open=True, vial_low=True)
    spill = wait_alarm(watcher, site, "disp.spill", state="active")
    assert (spill["priority"], spill["latching"], spill["location"]) == ("high", True, "hotlab")
    assert wait_alarm(watcher, site, "disp.door_open", state="active")["priority"] == "medium"
    assert wait_alarm(watcher, site, "disp.vial_low", state="active")["priority"] == "low"
    state = watcher.json_of(suite.topic("device", "disp", "state"))
    assert state["values"]["unit_state"] == "error"
    assert alarm(watcher, site, "disp.unit_error") is None  # explained by the spill bit

    suite.sim("disp", "clear_error")
    wait_alarm(watcher, site, "disp.door_open", state="closed")  # non-latching: ends with its cause
    wait_alarm(watcher, site, "disp.vial_low", state="closed")
    spill = wait_alarm(watcher, site, "disp.spill", condition="absent")
    assert spill["state"] == "active"  # latched until a person resets it after clearance
    watcher.publish(
        suite.topic("cmd", "rps", "reset"), {"alarm_id": "disp.spill", "note": "area monitored clean"}
    )
    wait_alarm(watcher, site, "disp.spill", state="closed")

    suite.sim("disp", "fault", silent=True)
    lost = wait_alarm(watcher, site, "disp.comm_lost", state="active")
    assert (lost["priority"], lost["kind"]) == ("high", "technical")
    assert "ring" in lost["message"]
    watcher.wait_for(
        lambda w: w.json_of(suite.topic("device", "disp", "state"))["stale"], 5, what="stale state"
    )


def test_two_completions_between_polls_are_both_recorded(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, tmp_path, poll_s=1.5)
    site = suite.site
    state_t = suite.topic("device", "disp", "state")
    done = suite.sim("disp", "burst", jobs=[patient(1, room=1), patient(2, room=3)])
    assert [d["seq"] for d in done] == [1, 2]
    recs = wait_records(watcher, site, 2)
    assert [(r["record_id"], r["completion_seq"], r["room"]) for r in recs] == [
        ("disp-1001", 1, "uptake1"),
        ("disp-1002", 2, "uptake3"),
    ]
    seen = {
        m["values"]["jobs_completed"]
        for m in (json.loads(p) for t, p, *_ in watcher.messages if t == state_t)
        if m["values"]
    }
    assert seen == {0, 2}  # no poll ever saw the unit between the two completions
    for room in ("uptake1", "uptake3"):
        watcher.wait_for(
            lambda w, room=room: any(
                e["data"]["area"] == room and e["data"]["occupied"]
                for e in events(w, site, "occupancy.changed")
            ),
            5,
            what=f"{room} occupied",
        )
    assert len(records(watcher, site)) == 2
