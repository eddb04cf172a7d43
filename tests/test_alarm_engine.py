"""Alarm state machine: condition separate from signal state, latching, ack, reset, restore."""

from __future__ import annotations

import asyncio

import pytest

from suitemon.daemon.alarms import AlarmEngine, AlarmError, Condition, Reset
from suitemon.daemon.config import parse_config
from suitemon.daemon.events import Recorder
from suitemon.daemon.journal import Journal

CFG = parse_config({"site": {"id": "s", "name": "S"}})


def cond(present=True, latching=False, aid="dev.x"):
    return Condition(
        alarm_id=aid,
        type="test.x",
        present=present,
        priority="medium",
        kind="clinical",
        source="dev",
        message="x",
        latching=latching,
    )


def run(fn, tmp_path):
    async def main():
        j = Journal(tmp_path / "j.sqlite3")
        rec = Recorder(j)
        eng = AlarmEngine(rec, CFG)
        try:
            return fn(eng, rec, j)
        finally:
            rec.flush()
            j.close()

    return asyncio.run(main())


def test_non_latching_alarm_closes_with_its_condition(tmp_path):
    def body(eng, rec, j):
        eng.apply(cond(True))
        assert eng.alarms["dev.x"].state == "active"
        assert eng.apply(cond(True)) is None  # no change, no event
        eng.apply(cond(False))
        assert "dev.x" not in eng.alarms
        rec.flush()
        return [e.type for e in j.events_after(0)]

    assert run(body, tmp_path) == ["alarm.raised", "alarm.cleared"]


def test_latching_alarm_stays_until_reset_and_reset_needs_condition_gone(tmp_path):
    def body(eng, rec, j):
        eng.apply(cond(True, latching=True))
        with pytest.raises(AlarmError, match="still present"):
            eng.reset("dev.x", "nurse1")
        eng.acknowledge("dev.x", "nurse1")
        a = eng.alarms["dev.x"]
        assert a.state == "acknowledged" and a.acknowledged_by == "nurse1" and a.condition == "present"
        eng.apply(cond(False, latching=True))
        assert eng.alarms["dev.x"].condition == "absent"  # still open: latched
        ev = eng.reset("dev.x", "nurse2", "patient fine")
        assert ev.type == "alarm.reset" and ev.actor == "nurse2"
        assert ev.data["alarm"]["state"] == "closed" and ev.data["alarm"]["closed_by"] == "nurse2"
        assert "dev.x" not in eng.alarms

    run(body, tmp_path)


def test_rule_reset_closes_and_a_new_raise_is_a_new_occurrence(tmp_path):
    def body(eng, rec, j):
        first = eng.apply(cond(True, latching=True)).data["alarm"]["occurrence"]
        eng.apply(cond(False, latching=True))
        eng.apply(Reset("dev.x", actor="room:uptake3", reason="cancelled in the room"))
        second = eng.apply(cond(True, latching=True)).data["alarm"]["occurrence"]
        assert first != second

    run(body, tmp_path)


def test_double_ack_and_unknown_alarm_are_refused(tmp_path):
    def body(eng, rec, j):
        with pytest.raises(AlarmError, match="no open alarm"):
            eng.acknowledge("nope", "nurse1")
        eng.apply(cond(True))
        eng.acknowledge("dev.x", "nurse1")
        with pytest.raises(AlarmError, match="already acknowledged"):
            eng.acknowledge("dev.x", "nurse2")

    run(body, tmp_path)


def test_open_alarms_are_rebuilt_from_the_journal(tmp_path):
    def body(eng, rec, j):
        eng.apply(cond(True, aid="a.one"))
        eng.apply(cond(True, latching=True, aid="a.two"))
        eng.acknowledge("a.two", "nurse1")
        eng.apply(cond(True, aid="a.three"))
        eng.apply(cond(False, aid="a.three"))
        rec.flush()
        fresh = AlarmEngine(rec, CFG)
        fresh.restore(j.latest_per_alarm())
        return {k: (v.state, v.acknowledged_by) for k, v in fresh.alarms.items()}

    assert run(body, tmp_path) == {"a.one": ("active", None), "a.two": ("acknowledged", "nurse1")}


def test_site_alarm_type_overrides_rule_priority(tmp_path):
    cfg = parse_config(
        {
            "site": {"id": "s", "name": "S"},
            "alarm_types": {"test.x": {"priority": "high", "kind": "technical", "latching": True}},
        }
    )

    async def main():
        j = Journal(tmp_path / "j.sqlite3")
        eng = AlarmEngine(Recorder(j), cfg)
        eng.apply(cond(True))
        a = eng.alarms["dev.x"]
        j.close()
        return a.priority, a.kind, a.latching

    assert asyncio.run(main()) == ("high", "technical", True)
