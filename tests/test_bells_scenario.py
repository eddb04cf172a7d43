"""The shipped deterioration scenario, played 5x faster against the example's ladder shape scaled by 1/5."""

from __future__ import annotations

import pytest
from bells_helpers import bells_device, bells_extra, start_bells_suite
from helpers import REPO

SCENARIO = REPO / "examples" / "scenarios" / "deterioration.toml"
SPEED = 5.0


def test_deterioration_scenario_runs_the_ladder_to_its_failsafe(make_suite, watcher, tmp_path):
    # examples/suite.toml: 30 s, 30 s, 60 s (failsafe); the scenario's times assume it.
    extra = bells_extra(steps=(30 / SPEED, 30 / SPEED, 60 / SPEED))
    suite = start_bells_suite(make_suite, watcher, bells_device("tcp", tmp_path), extra)
    failures = suite.play(SCENARIO, watcher, speed=SPEED)
    assert failures == []
    roles = [t.rsplit("/", 1)[1] for t, *_ in watcher.messages if t.startswith(suite.topic("notify") + "/")]
    assert roles[:3] == ["room_nurse", "suite_staff", "resus_team"]


REPRESSED = REPO / "examples" / "scenarios" / "call-repressed.toml"


@pytest.mark.slow  # ~20 s: 86 scenario seconds played 5x faster
def test_call_repressed_after_an_ack_sounds_again_and_restarts_its_ladder(make_suite, watcher, tmp_path):
    # examples/suite.toml [ladders.call]: room nurse 60 s, suite staff 120 s (failsafe), scaled by 1/SPEED.
    extra = bells_extra()
    extra["ladders"]["call"] = {
        "steps": [
            {"role": "room_nurse", "timeout_s": 60 / SPEED},
            {"role": "suite_staff", "timeout_s": 120 / SPEED, "failsafe": True},
        ]
    }
    extra["alarm_types"]["bells.call"]["ladder"] = "call"
    suite = start_bells_suite(make_suite, watcher, bells_device("tcp", tmp_path), extra)
    failures = suite.play(REPRESSED, watcher, speed=SPEED)
    assert failures == []
    reasons = [
        e["data"]["reason"]
        for e in watcher.events(suite.site)
        if e["type"] == "alarm.notify" and e["alarm_id"] == "bells.uptake3.call"
    ]
    assert reasons[:3] == ["raised", "reannunciated", "timeout"]
