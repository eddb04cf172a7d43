"""Scenario power-failure (examples/scenarios/power-failure.toml), played against the example's
[shutdown] section with the UPS on a pty (RTU) and on TCP at the same time."""

from __future__ import annotations

from shutdown_helpers import SCENARIOS, example_suite, play_all, state_of, targets

__all__ = ["targets"]


def test_mains_lost_the_sequence_runs_to_the_end(make_suite, watcher, targets, tmp_path):
    runs = [example_suite(make_suite, watcher, targets, tmp_path, t) for t in ("rtu", "tcp")]
    failures = play_all([(suite, SCENARIOS / "power-failure.toml", watcher) for suite, _ in runs])
    assert failures == [[], []]
    for suite, tg in runs:
        assert [c["command"] for c in tg["scanner"].commands()] == ["stop_new_acquisitions",
                                                                    "park_gantry_and_power_down"]
        assert [c["command"] for c in tg["workstations"].commands()] == ["shutdown"]
        st = state_of(watcher, suite)
        assert st["phase"] == "completed" and all(s["status"] == "done" for s in st["steps"])
        ups = suite.sim("ups", "state")
        assert ups["pending"] == "shutdown" and ups["on_battery"] and ups["return_on_mains"] is False
        assert [c["raw"] for c in ups["outlet_commands"]] == [(1 << 3) | (1 << 7) | (1 << 8)]
        assert 0 < ups["countdown_s"] <= 60
