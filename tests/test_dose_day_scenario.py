"""The shipped dose-day scenario plays clean against the example site's dispenser (at double speed)."""

from __future__ import annotations

import tomllib

import pytest
from dose_fixtures import records
from helpers import REPO

SPEED = 2.0


@pytest.mark.slow
def test_dose_day_scenario_passes(make_suite, watcher, tmp_path):
    example = tomllib.loads((REPO / "examples" / "suite.toml").read_text())
    dev = dict(example["devices"]["dispenser"], serial_port=str(tmp_path / "dispenser.tty"))
    # The scenario's clock runs SPEED times faster, so the unit's phases must too.
    dev["sim"] = dict(dev["sim"], time_scale=dev["sim"]["time_scale"] * SPEED)
    extra = {
        k: example[k]
        for k in ("areas", "roles", "ladders", "protocols", "alarm_types", "dispensing", "uptake")
    }
    suite = make_suite({"dispenser": dev}, extra)
    suite.start_sims()
    suite.start_daemon(watcher)
    state_t = suite.topic("device", "dispenser", "state")
    watcher.wait_for(lambda w: (s := w.json_of(state_t)) and s["values"], 10, what="first reading")

    failures = suite.play(REPO / "examples" / "scenarios" / "dose-day.toml", watcher, speed=SPEED)
    assert failures == []
    recs = records(watcher, suite.site)
    assert [r["room"] for r in recs] == ["uptake1", "uptake2", "uptake3", "uptake4", "uptake5"]
    over = [
        r["record_id"]
        for r in recs
        if any(c["check"] == "tolerance" and c["ok"] is False for c in r["checks"])
    ]
    assert over == ["dispenser-1002"]
