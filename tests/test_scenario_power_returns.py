"""Scenario power-returns (examples/scenarios/power-returns.toml): mains back before the point of
no return aborts the sequence and resumes what was commanded. UPS on RTU and TCP at once."""

from __future__ import annotations

import pytest
from shutdown_helpers import SCENARIOS, example_suite, play_all, shutdown_events, state_of, targets

__all__ = ["targets"]


@pytest.mark.slow  # real-time scenario play; started first, see conftest
def test_mains_back_before_the_point_of_no_return_aborts_and_resumes(make_suite, watcher, targets, tmp_path):
    runs = [example_suite(make_suite, watcher, targets, tmp_path, t) for t in ("rtu", "tcp")]
    failures = play_all([(suite, SCENARIOS / "power-returns.toml", watcher) for suite, _ in runs])
    assert failures == [[], []]
    for suite, tg in runs:
        st = state_of(watcher, suite)
        assert st["phase"] == "aborted" and st["armed"] and not st["past_point_of_no_return"]
        commanded = [s["id"] for s in st["steps"] if s["commanded"]]
        assert commanded[0] == "stop_acquisitions" and "scanner_power_down" not in commanded
        # Every commanded step got its resume command, the last commanded first.
        resumes = [e["data"]["step"] for e in shutdown_events(watcher, suite.site, "shutdown.resume.sent")]
        assert resumes == commanded[::-1]
        assert all(s["resume_status"] == "done" for s in st["steps"] if s["commanded"])
        scanner = [(c["command"], c["resume"]) for c in tg["scanner"].commands()]
        assert scanner == [("stop_new_acquisitions", False), ("allow_acquisitions", True)]
        assert suite.sim("ups", "state")["outlet_commands"] == []  # the UPS was never told anything
        aborted = shutdown_events(watcher, suite.site, "shutdown.aborted")[0]
        assert aborted["data"]["reason"] == "mains back and stable for 10 s"
