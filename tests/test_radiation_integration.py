"""Modbus area monitors end to end: simulator process (physical model) -> daemon process -> Mosquitto."""

from __future__ import annotations

import time

import pytest
from helpers import free_port

from suitemon.daemon.alarms import parse_iso

HOTLAB = {
    "normal": {"warning_usv_h": 7.5, "alarm_usv_h": 20.0, "hysteresis_usv_h": 2.0},
    "alarm_delay_s": 1.0,
    "zero_fault_s": 1.0,
    "rise": {"rise_usv_h": 3.0, "window_s": 10.0, "confirm_s": 0.6, "min_baseline_readings": 3},
}
UPTAKE = {**HOTLAB, "occupied": {"warning_usv_h": 60.0, "alarm_usv_h": 150.0, "hysteresis_usv_h": 5.0}}
RADIATION = {"radiation": {"areas": {"hotlab": HOTLAB, "uptake3": UPTAKE}}}


def monitor(transport: str, tmp_path, location: str = "hotlab", poll_s: float = 0.2, **kw) -> dict:
    d = {
        "kind": "area_monitor_modbus",
        "name": f"{location} gamma",
        "location": location,
        "transport": transport,
        "poll_s": poll_s,
        "timeout_s": 0.2,
        "comm_loss_after": 3,
        "sim": {"seed": 5},
    }
    if transport == "tcp":
        d.update(host="127.0.0.1", port=free_port())
    else:
        d.update(serial_port=str(tmp_path / f"{location}.tty"), baudrate=19200, word_order="little")
    return d | kw


def alarm(watcher, suite, alarm_id):
    return watcher.json_of(suite.topic("alarm", alarm_id))


def is_active(suite, alarm_id):
    return lambda w: (a := w.json_of(suite.topic("alarm", alarm_id))) and a["state"] == "active" and a


def is_closed(suite, alarm_id):
    return lambda w: (a := w.json_of(suite.topic("alarm", alarm_id))) and a["state"] == "closed" and a


def raised(watcher, suite, alarm_id) -> list[dict]:
    return [
        e for e in watcher.events(suite.site) if e["alarm_id"] == alarm_id and e["type"] == "alarm.raised"
    ]


def states(watcher, suite, device) -> list[dict]:
    import json

    t = suite.topic("device", device, "state")
    return [json.loads(p) for top, p, *_ in watcher.messages if top == t]


def start(make_suite, watcher, devices, **extra):
    suite = make_suite(devices, RADIATION | extra)
    suite.start_sims()
    suite.start_daemon(watcher)
    return suite


def test_threshold_crossing_waits_for_the_delay_and_does_not_chatter(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, {"hot": monitor("tcp", tmp_path)})
    state_t = suite.topic("device", "hot", "state")
    s = watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and not s["stale"] and s["level"] == "normal" and s,
        10,
        what="fresh normal state",
    )
    assert s["unit"] == "uSv/h" and s["area"] == "hotlab" and s["thresholds"]["set"] == "normal"
    assert 0 < s["dose_rate_usv_h"] < 1  # Poisson background around 0.1

    # An excursion that never lasts: alternating 25 / 0.1 must raise nothing.
    suite.sim("hot", "flap", low=0.1, high=25.0)
    watcher.wait_for(
        lambda w: (
            len([x for x in states(w, suite, "hot") if x["values"].get("dose_rate_usv_h") == 25.0]) >= 5
        ),
        10,
        what="five readings of 25 between readings of 0.1",
    )
    assert not raised(watcher, suite, "hot.rate_alarm")

    suite.sim("hot", "fix", usv_h=25.0)
    rec = watcher.wait_for(is_active(suite, "hot.rate_alarm"), 10, what="rate alarm")
    assert rec["priority"] == "high" and rec["location"] == "hotlab"
    # The delay is measured on reading timestamps: the raise comes >= 1 s after the first steady 25.
    first = min(
        parse_iso(x["ts"])
        for x in states(watcher, suite, "hot")
        if x["values"].get("dose_rate_usv_h") == 25.0 and parse_iso(x["ts"]) > parse_iso(rec["raised_at"]) - 3
    )
    assert parse_iso(rec["raised_at"]) - first >= 1.0 - 0.25

    # Wobbling inside the hysteresis band (18..20) neither clears nor re-raises.
    suite.sim("hot", "flap", low=18.5, high=21.0)
    n0 = len(states(watcher, suite, "hot"))
    watcher.wait_for(lambda w: len(states(w, suite, "hot")) >= n0 + 8, 10, what="eight wobbling readings")
    assert alarm(watcher, suite, "hot.rate_alarm")["state"] == "active"
    assert len(raised(watcher, suite, "hot.rate_alarm")) == 1

    suite.sim("hot", "fix", usv_h=10.0)  # below the alarm band, still above the warning level
    watcher.wait_for(is_closed(suite, "hot.rate_alarm"), 10, what="rate alarm cleared")
    assert alarm(watcher, suite, "hot.rate_warning")["state"] == "active"
    watcher.wait_for(lambda w: w.json_of(state_t)["level"] == "warning", 5, what="level warning")
    suite.sim("hot", "fix", usv_h=0.1)
    watcher.wait_for(is_closed(suite, "hot.rate_warning"), 10, what="warning cleared")
    types = [e["type"] for e in watcher.events(suite.site) if e["alarm_id"] == "hot.rate_alarm"]
    assert types == ["alarm.raised", "alarm.cleared"]


def test_occupancy_command_switches_to_the_occupied_thresholds(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, {"up3": monitor("rtu", tmp_path, "uptake3")})
    state_t = suite.topic("device", "up3", "state")
    watcher.wait_for(lambda w: (s := w.json_of(state_t)) and s["level"] == "normal", 10, what="normal state")

    watcher.publish(
        suite.topic("cmd", "nurse1", "occupancy"),
        {"area": "uptake3", "occupied": True, "activity_mbq": 350, "reason": "FDG injected"},
    )
    watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and s["occupied"] and s["thresholds"]["set"] == "occupied",
        10,
        what="occupied thresholds in use",
    )
    suite.sim("up3", "arrive", activity_mbq=350, distance_m=1.0)  # ~32 uSv/h: normal next to a patient
    s = watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and s["dose_rate_usv_h"] > 25 and s, 10, what="patient dose rate"
    )
    assert s["dose_rate_usv_h"] == pytest.approx(32.3, rel=0.15) and s["level"] == "normal"
    n0 = len(states(watcher, suite, "up3"))
    watcher.wait_for(
        lambda w: len(states(w, suite, "up3")) >= n0 + 10, 10, what="ten readings with the patient"
    )
    assert not raised(watcher, suite, "up3.rate_warning") and not raised(watcher, suite, "up3.spill")

    # Marked free while the patient is still there: the normal levels apply and both alarm.
    watcher.publish(suite.topic("cmd", "nurse1", "occupancy"), {"area": "uptake3", "occupied": False})
    watcher.wait_for(is_active(suite, "up3.rate_alarm"), 10, what="alarm on the normal levels")
    assert alarm(watcher, suite, "up3.rate_warning")["state"] == "active"
    assert watcher.json_of(state_t)["thresholds"]["set"] == "normal"
    suite.sim("up3", "leave")
    watcher.wait_for(is_closed(suite, "up3.rate_alarm"), 10, what="cleared when the patient leaves")
    watcher.wait_for(is_closed(suite, "up3.rate_warning"), 10, what="warning cleared")


def test_unexplained_step_is_a_latching_spill_alarm(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, {"hot": monitor("tcp", tmp_path)})
    state_t = suite.topic("device", "hot", "state")
    n0 = watcher.wait_for(
        lambda w: len(states(w, suite, "hot")) >= 5 and len(states(w, suite, "hot")),
        10,
        what="a baseline of readings",
    )
    assert n0
    suite.sim("hot", "spill", usv_h=5.0)  # 5 uSv/h: below every level, but a step from 0.1
    rec = watcher.wait_for(is_active(suite, "hot.spill"), 10, what="spill alarm")
    assert rec["priority"] == "high" and rec["latching"] and rec["details"]["baseline_usv_h"] < 0.5
    assert "suspected spill" in rec["message"]
    assert watcher.json_of(state_t)["spill_suspected"] is True
    assert not raised(watcher, suite, "hot.rate_warning")

    suite.sim("hot", "clean")
    rec = watcher.wait_for(
        lambda w: (a := alarm(w, suite, "hot.spill")) and a["condition"] == "absent" and a,
        10,
        what="spill condition gone",
    )
    assert rec["state"] == "active"  # latched: a person must confirm the decontamination
    watcher.publish(
        suite.topic("cmd", "rps", "reset"), {"alarm_id": "hot.spill", "note": "bench decontaminated"}
    )
    rec = watcher.wait_for(is_closed(suite, "hot.spill"), 10, what="reset")
    assert rec["closed_by"] == "rps"


def test_over_range_and_detector_faults_are_high_technical_and_never_all_clear(make_suite, watcher, tmp_path):
    dev = monitor("tcp", tmp_path, sim={"seed": 2, "range_max_usv_h": 500.0})
    suite = start(make_suite, watcher, {"hot": dev})
    state_t = suite.topic("device", "hot", "state")
    watcher.wait_for(lambda w: (s := w.json_of(state_t)) and s["level"] == "normal", 10, what="normal state")

    suite.sim("hot", "fix", usv_h=2000.0)
    rec = watcher.wait_for(is_active(suite, "hot.over_range"), 10, what="over-range alarm")
    assert (rec["priority"], rec["kind"]) == ("high", "technical")
    watcher.wait_for(lambda w: w.json_of(state_t)["level"] == "over_range", 5, what="level over_range")
    watcher.wait_for(
        is_active(suite, "hot.rate_alarm"), 10, what="over range counts as above the alarm level"
    )
    suite.sim("hot", "fix", usv_h=0.2)
    watcher.wait_for(is_closed(suite, "hot.over_range"), 10, what="over range cleared")
    watcher.wait_for(is_closed(suite, "hot.rate_alarm"), 10, what="rate alarm cleared")

    suite.sim("hot", "fix", usv_h=30.0)
    watcher.wait_for(is_active(suite, "hot.rate_alarm"), 10, what="rate alarm again")
    # The instrument's own alarm_high bit (simulated setpoint 20 uSv/h) is an alarm of its own.
    rec = watcher.wait_for(
        is_active(suite, "hot.instrument_high_alarm"), 10, what="instrument's own high alarm"
    )
    assert (rec["priority"], rec["kind"]) == ("high", "clinical")
    suite.sim("hot", "fail", mode="fault")  # fault flag, reading 0
    rec = watcher.wait_for(is_active(suite, "hot.detector_fault"), 10, what="detector fault")
    assert (rec["priority"], rec["kind"]) == ("high", "technical")
    s = watcher.wait_for(lambda w: (s := w.json_of(state_t))["level"] == "fault" and s, 5, what="level fault")
    assert s["dose_rate_usv_h"] is None
    assert alarm(watcher, suite, "hot.rate_alarm")["state"] == "active"  # a dead detector is not all clear

    suite.sim("hot", "repair")
    suite.sim("hot", "fail", mode="zero")  # reads exactly 0, no flag
    watcher.wait_for(is_closed(suite, "hot.detector_fault"), 10, what="fault flag gone")
    rec = watcher.wait_for(is_active(suite, "hot.zero_reading"), 10, what="zero-reading warning")
    assert (rec["priority"], rec["kind"]) == ("medium", "technical") and "not 'all clear'" in rec["message"]
    assert watcher.json_of(state_t)["level"] == "suspect"
    assert alarm(watcher, suite, "hot.rate_alarm")["state"] == "active"
    suite.sim("hot", "repair")
    suite.sim("hot", "fix")  # back to the physical model: background only
    watcher.wait_for(is_closed(suite, "hot.zero_reading"), 10, what="zero warning cleared")
    watcher.wait_for(is_closed(suite, "hot.rate_alarm"), 10, what="rate alarm cleared by a real reading")


def test_comm_loss_stale_state_and_integrated_dose(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, {"hot": monitor("rtu", tmp_path)})
    state_t = suite.topic("device", "hot", "state")
    suite.sim("hot", "fix", usv_h=3600.0)  # 1 uSv per second makes the sum easy to check
    watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and s["dose_rate_usv_h"] == 3600.0, 10, what="fixed rate"
    )
    t0 = time.monotonic()
    before = watcher.json_of(state_t)["dose_today"]["usv"]
    s = watcher.wait_for(
        lambda w: (s := w.json_of(state_t))["dose_today"]["usv"] >= before + 2 and s,
        10,
        what="two more microsieverts",
    )
    took = time.monotonic() - t0
    assert took >= 1.5  # 1 uSv/s cannot integrate 2 uSv much faster than 2 s
    assert s["dose_today"]["complete"] and s["dose_today"]["day"]

    suite.sim("hot", "fault", silent=True)
    rec = watcher.wait_for(is_active(suite, "hot.comm_lost"), 10, what="comm lost")
    assert "NOT being monitored" in rec["message"] and rec["priority"] == "high"
    s = watcher.wait_for(lambda w: (s := w.json_of(state_t))["stale"] and s, 5, what="stale state")
    assert s["level"] == "unknown" and s["comm"] == "lost"
    suite.sim("hot", "clear")
    watcher.wait_for(is_closed(suite, "hot.comm_lost"), 10, what="comm back")
    s = watcher.wait_for(lambda w: (s := w.json_of(state_t)) and not s["stale"] and s, 5, what="fresh")
    assert s["dose_today"]["complete"] is False  # the silent gap was not filled in
