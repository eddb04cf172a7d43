"""Scenario power-failure (examples/scenarios/power-failure.toml), played against the example's
[shutdown] section with the UPS on a pty (RTU) and on TCP at the same time."""

from __future__ import annotations

import pytest
from shutdown_helpers import SCENARIOS, example_shutdown, example_suite, play_all, state_of, targets

__all__ = ["targets"]


@pytest.mark.slow  # real-time scenario play; started first, see conftest
def test_mains_lost_the_sequence_runs_to_the_end(make_suite, watcher, targets, tmp_path):
    runs = [example_suite(make_suite, watcher, targets, tmp_path, t) for t in ("rtu", "tcp")]
    failures = play_all([(suite, SCENARIOS / "power-failure.toml", watcher) for suite, _ in runs])
    assert failures == [[], []]
    for suite, tg in runs:
        # The acquisition console drives the scanner's shutdown, so it is commanded last of all.
        assert [c["command"] for c in tg["scanner"].commands()] == [
            "stop_new_acquisitions",
            "controlled_shutdown",
        ]
        assert [c["command"] for c in tg["dispenser"].commands()] == ["safe_state"]
        assert [c["command"] for c in tg["recon"].commands()] == ["finish_or_flush_then_stop"]
        assert [c["command"] for c in tg["workstations"].commands()] == ["shutdown"]
        order = [c["step"] for t in tg.values() for c in t.commands()]
        assert (
            sorted(order, key=lambda s: [x["id"] for x in example_shutdown()["steps"]].index(s))[-1]
            == "scanner_power_down"
        )
        st = state_of(watcher, suite)
        assert st["phase"] == "completed" and all(s["status"] == "done" for s in st["steps"])
        ups = suite.sim("ups", "state")
        assert ups["on_battery"] and ups["return_on_mains"] is False
        # One command word: shutdown-and-return with off delay, to the main group and switched groups 0, 1.
        assert [c["raw"] for c in ups["outlet_commands"]] == [
            (1 << 3) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10)
        ]
        g = ups["groups"]
        assert (
            g["switched_group_0"]["pending"] == "shutdown" and 0 < g["switched_group_0"]["countdown_s"] <= 60
        )
        assert (
            g["switched_group_1"]["pending"] == "shutdown" and 60 < g["switched_group_1"]["countdown_s"] <= 90
        )
        # Patient supervision (bells, area monitors, this PC) is on the group that goes off last.
        assert g["main_group"]["pending"] == "shutdown" and 800 < g["main_group"]["countdown_s"] <= 900
        assert g["switched_group_2"]["pending"] is None
