"""Scenario ups-calibration (examples/scenarios/ups-calibration.toml): a runtime calibration
drains the battery with mains present, low battery signalled on the way; no shutdown starts.
UPS on a pty (RTU) and on TCP at the same time."""

from __future__ import annotations

import pytest
from shutdown_helpers import SCENARIOS, example_suite, play_all, shutdown_events, state_of, targets

__all__ = ["targets"]


@pytest.mark.slow
def test_a_battery_calibration_starts_no_shutdown(make_suite, watcher, targets, tmp_path):
    runs = [example_suite(make_suite, watcher, targets, tmp_path, t) for t in ("rtu", "tcp")]
    failures = play_all([(suite, SCENARIOS / "ups-calibration.toml", watcher) for suite, _ in runs])
    assert failures == [[], []]
    for suite, tg in runs:
        assert shutdown_events(watcher, suite.site, "shutdown.started") == []
        assert all(t.commands() == [] for t in tg.values())
        assert state_of(watcher, suite)["phase"] == "idle"
        sim = suite.sim("ups", "state")
        assert sim["outlet_commands"] == [] and not sim["calibrating"]
        assert sim["charge_pct"] <= 26  # the calibration really drained the battery
        raised = [e["alarm_id"] for e in watcher.events(suite.site) if e["type"] == "alarm.raised"]
        assert raised == ["ups.battery_test"]
        # The retained device state said what it was while it ran.
        powers = {
            json_power(p) for top, p, *_ in watcher.messages if top == suite.topic("device", "ups", "state")
        }
        assert "calibration" in powers and "battery" not in powers


def json_power(payload: bytes):
    import json

    return json.loads(payload).get("power")


def test_a_real_mains_loss_during_a_calibration_starts_the_sequence(make_suite, watcher, targets, tmp_path):
    from shutdown_helpers import short_shutdown
    from test_shutdown_policies import event, start

    sd = short_shutdown(triggers={"on_battery_s": 3.0, "runtime_below_s": False, "debounce_s": 0.5})
    suite = start(make_suite, watcher, tmp_path, "tcp", sd)
    suite.sim("ups", "calibrate")
    watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", "ups.battery_test"))) and a["state"] == "active",
        10,
        what="battery-test alarm",
    )
    assert not shutdown_events(watcher, suite.site, "shutdown.started")
    suite.sim("ups", "mains_fail")  # the calibration bit stays set: input bad and 0 V say mains is gone
    assert suite.sim("ups", "state")["calibrating"] is True
    started = event(watcher, suite, "shutdown.started", timeout=15)
    assert started["data"]["trigger"]["name"] == "on_battery"
    assert watcher.json_of(suite.topic("alarm", "ups.on_battery"))["state"] == "active"
