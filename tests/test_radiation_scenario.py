"""The shipped spill scenario, played against the shipped example config's radiation monitors."""

from __future__ import annotations

import tomllib

from helpers import REPO

from suitemon.daemon.demo.run import localize

RADIATION_KINDS = ("area_monitor_modbus", "ludlum375")


def example_radiation_config(tmp_path, broker_port):
    raw = tomllib.loads((REPO / "examples" / "suite.toml").read_text())
    local = localize(raw, tmp_path / "local", broker_port, "5")
    devices = {d: dev for d, dev in local["devices"].items() if dev["kind"] in RADIATION_KINDS}
    alarm_types = {
        t: at
        for t, at in local["alarm_types"].items()
        if t.startswith("radiation.") or t == "device.comm_lost"
    }
    extra = {k: local[k] for k in ("areas", "roles", "ladders", "protocols", "radiation")}
    return devices, extra | {"alarm_types": alarm_types}


def test_spill_in_the_hot_lab_alarms_only_the_hot_lab(make_suite, watcher, broker, tmp_path):
    devices, extra = example_radiation_config(tmp_path, broker.port)
    assert {"hotlab_gamma", "uptake3_gamma", "uptake6_ludlum", "scanner_gamma"} <= set(devices)
    suite = make_suite(devices, extra)
    suite.start_sims()
    suite.start_daemon(watcher)
    for did in devices:  # every monitor reporting before the story starts
        watcher.wait_for(
            lambda w, did=did: (s := w.json_of(suite.topic("device", did, "state"))) and s["comm"] == "ok",
            15,
            what=f"{did} up",
        )

    failures = suite.play(REPO / "examples" / "scenarios" / "spill.toml", watcher)
    assert failures == []

    # The uptake rooms were legitimately high all along, on their occupied levels.
    for did, _area in (("uptake3_gamma", "uptake3"), ("uptake6_ludlum", "uptake6")):
        s = watcher.json_of(suite.topic("device", did, "state"))
        assert s["occupied"] and s["thresholds"]["set"] == "occupied" and s["level"] == "normal", s
        assert s["dose_rate_usv_h"] > 7.5  # above the controlled-area criterion, and no alarm
    raised = {e["alarm_id"] for e in watcher.events(suite.site) if e["type"] == "alarm.raised"}
    # The hot-lab instrument's own low alarm (set at the area's warning level) agrees.
    assert raised == {"hotlab_gamma.spill", "hotlab_gamma.rate_warning", "hotlab_gamma.instrument_low_alarm"}
