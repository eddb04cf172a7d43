"""Scenario power-flicker (examples/scenarios/power-flicker.toml): a 2 s blip and an 18 s
self-test start no sequence. UPS on a pty (RTU) and on TCP at the same time."""

from __future__ import annotations

import pytest
from shutdown_helpers import SCENARIOS, example_suite, play_all, shutdown_events, state_of, targets

__all__ = ["targets"]


@pytest.mark.slow  # real-time scenario play; started first, see conftest
def test_a_flicker_and_a_self_test_start_no_sequence(make_suite, watcher, targets, tmp_path):
    runs = [example_suite(make_suite, watcher, targets, tmp_path, t) for t in ("rtu", "tcp")]
    failures = play_all([(suite, SCENARIOS / "power-flicker.toml", watcher) for suite, _ in runs])
    assert failures == [[], []]
    for suite, tg in runs:
        assert shutdown_events(watcher, suite.site, "shutdown.started") == []
        assert all(t.commands() == [] for t in tg.values())
        assert state_of(watcher, suite)["phase"] == "idle"
        assert suite.sim("ups", "state")["outlet_commands"] == []
        # The self-test was seen (and shown) as a self-test, its own LOW alarm, not as a power failure.
        raised = [e for e in watcher.events(suite.site) if e["type"] == "alarm.raised"]
        assert [e["alarm_id"] for e in raised] == ["ups.on_battery", "ups.battery_test"]
        assert raised[1]["data"]["alarm"]["priority"] == "low"
