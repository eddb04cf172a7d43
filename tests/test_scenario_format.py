"""Scenario steps `say` and `wait_event`, and `demo --speed` scaling the story timers (not the polls)."""

from __future__ import annotations

import asyncio
import time
import tomllib

import pytest
from helpers import REPO

from suitemon.daemon.config import ConfigError, parse_config
from suitemon.daemon.demo.scenario import Scenario, load_scenario, play
from suitemon.daemon.demo.speed import speed_up


class Events:
    """An observer fed by the test: the timeline logic alone, no suite behind it."""

    def __init__(self):
        self.seen: list[dict] = []

    def alarm(self, alarm_id):
        return None

    def events(self):
        return list(self.seen)

    def ever_raised(self, alarm_id):
        return False


def test_a_step_is_exactly_one_kind(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[step]]\nat = 1\nsay = "hello"\ncommand = "ack"\n')
    with pytest.raises(ConfigError) as err:
        load_scenario(bad)
    assert "step.0" in str(err.value) and "exactly one of" in str(err.value)


def test_say_narrates_and_wait_event_holds_the_timeline_until_the_event():
    scn = Scenario.model_validate(
        {
            "name": "t",
            "step": [
                {"at": 0, "say": "hello"},
                {"at": 0.1, "wait_event": "shutdown.started", "where": {"data.n": 1}, "within": 5},
                {"at": 0.2, "command": "ack", "args": {"alarm_id": "a"}},
            ],
        }
    )
    obs, said, sent = Events(), [], []

    def command(actor, verb, args):
        sent.append((time.monotonic(), verb))

    async def main():
        t0 = time.monotonic()
        asyncio.get_running_loop().call_later(
            0.6, obs.seen.append, {"type": "shutdown.started", "data": {"n": 1}}
        )
        fails = await play(scn, sim=None, command=command, observer=obs, say=said.append)
        return t0, fails

    t0, fails = asyncio.run(main())
    assert fails == []
    assert "hello" in said[0]
    # The command kept its 0.1 s spacing after the event (seen at 0.6 s), not its 0.2 s from the start.
    assert sent and 0.65 <= sent[0][0] - t0 < 1.5, sent[0][0] - t0


def test_wait_event_not_seen_within_its_limit_fails_the_scenario():
    scn = Scenario.model_validate({"name": "t", "step": [{"at": 0, "wait_event": "never", "within": 0.4}]})
    fails = asyncio.run(play(scn, sim=None, command=lambda *a: None, observer=Events(), speed=2))
    assert len(fails) == 1 and "never" in fails[0]


def test_speed_divides_story_timers_and_keeps_polls_and_io_timeouts():
    raw = tomllib.loads((REPO / "examples" / "suite.toml").read_text())
    fast = speed_up(raw, 4)
    assert [s["timeout_s"] for s in fast["ladders"]["deterioration"]["steps"]] == [7.5, 7.5, 15]
    assert fast["shutdown"]["triggers"]["on_battery_s"] == 15 / 4
    assert fast["shutdown"]["hold_off_s"] == 10 / 4
    assert fast["shutdown"]["targets"]["scanner"]["sim"]["ack_delay_s"] == 3 / 4
    groups = fast["shutdown"]["outlet_groups"]
    assert {g: v["off_delay_s"] for g, v in groups.items()} == {
        g: max(1, round(v["off_delay_s"] / 4)) for g, v in raw["shutdown"]["outlet_groups"].items()
    }
    assert all(isinstance(v["off_delay_s"], int) for v in groups.values())  # the UPS takes whole seconds
    assert fast["devices"]["dispenser"]["sim"]["time_scale"] == 80
    assert fast["radiation"]["areas"]["hotlab"]["alarm_delay_s"] == 5 / 4
    # The devices' and lines' real figures stay.
    for did in ("bells", "ups", "hotlab_gamma"):
        assert fast["devices"][did]["poll_s"] == raw["devices"][did]["poll_s"]
        assert fast["devices"][did]["timeout_s"] == raw["devices"][did]["timeout_s"]
    assert raw["ladders"]["deterioration"]["steps"][0]["timeout_s"] == 30  # the input is not changed
    parse_config(fast, "examples/suite.toml at speed 4")  # still a valid config


def test_the_shipped_tour_loads_and_covers_every_feature():
    tour = load_scenario(REPO / "examples" / "scenarios" / "tour.toml")
    sims = {(s.sim, s.action) for s in tour.step if s.sim}
    assert {
        ("bells", "press"),
        ("dispenser", "job"),
        ("hotlab_gamma", "spill"),
        ("ups", "mains_fail"),
        ("ups", "mains_restore"),
    } <= sims
    assert all(s.label() for s in tour.step)  # every step has its one line
    assert 150 <= tour.length <= 200  # about three minutes
