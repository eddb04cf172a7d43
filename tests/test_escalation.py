"""Escalation timing: ladders run on schedule, accept stops them, all-reject skips ahead,
and a daemon rebuilt from its journal resumes at the step it had reached.

These run the real AlarmEngine + Escalator on a real journal and a real event loop with
short timeouts (0.25-0.6 s); bounds have margins for a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from helpers import ManualClock, wait_until_async

from suitemon.daemon.alarms import AlarmEngine, AlarmError, Condition
from suitemon.daemon.config import parse_config
from suitemon.daemon.contract import Topics, messages_for
from suitemon.daemon.escalation import Escalator
from suitemon.daemon.events import Recorder
from suitemon.daemon.journal import open_journal

STEP = 0.3  # seconds per ladder step


def make_cfg(step=STEP, failsafe=STEP, emergency=True):
    return parse_config(
        {
            "site": {"id": "esc", "name": "Escalation tests"},
            "areas": {"uptake3": {"name": "Uptake room 3", "kind": "uptake_room"}},
            "roles": {
                "room_nurse": {"name": "Room nurse", "recipients": ["nurse1", "nurse2"]},
                "suite_staff": {"name": "Suite", "recipients": ["nurse1", "nurse2", "rad1"]},
                "resus": {"name": "Resus", "recipients": ["switchboard"]},
            },
            "ladders": {
                "det": {
                    "steps": [
                        {"role": "room_nurse", "timeout_s": step},
                        {"role": "suite_staff", "timeout_s": step},
                        {"role": "resus", "timeout_s": failsafe, "failsafe": True, "critical_care": True},
                    ]
                }
            },
            "protocols": {
                "det": {
                    "who": "Resus team",
                    "number": "2222",
                    "location": "Block C",
                    "first_actions": ["Stay with the patient"],
                }
            },
            "alarm_types": {
                "emergency": {
                    "priority": "high",
                    "kind": "clinical",
                    "latching": True,
                    "ladder": "det",
                    "protocol": "det",
                    "emergency": emergency,
                },
                "call": {"priority": "medium", "kind": "clinical", "latching": True, "ladder": "det"},
            },
        }
    )


class Core:
    """The alarm core as the daemon builds it, minus MQTT."""

    def __init__(self, tmp_path, cfg, clock=None):
        self.cfg = cfg
        self.journal = open_journal(tmp_path, "normal")
        self.recorder = Recorder(self.journal)
        self.engine = AlarmEngine(self.recorder, cfg, **({"clock": clock} if clock else {}))
        self.escalator = Escalator(self.engine, cfg, clock=clock)
        self.engine.restore(self.journal.latest_per_alarm())

    def raise_(self, type_="emergency", alarm_id="bells.uptake3.emergency", start_step=0):
        self.engine.apply(
            Condition(
                alarm_id=alarm_id,
                type=type_,
                present=True,
                location="uptake3",
                message="Emergency in Uptake room 3",
                start_step=start_step,
            )
        )
        self.recorder.flush()
        return self.engine.get(alarm_id)

    def notifies(self, alarm_id="bells.uptake3.emergency"):
        self.recorder.flush()
        return [e for e in self.journal.events_of_type("alarm.notify") if e.alarm_id == alarm_id]

    def types(self, alarm_id="bells.uptake3.emergency"):
        self.recorder.flush()
        return [e.type for e in self.journal.events_after(0, 10000) if e.alarm_id == alarm_id]

    def crash(self):
        """What SIGKILL leaves: committed events only, timers gone."""
        self.recorder.flush()
        self.escalator.cancel_all()
        self.journal.close()


def run(coro):
    return asyncio.run(coro)


def test_ladder_reaches_failsafe_on_schedule_then_repeats_it(tmp_path):
    async def main():
        core = Core(tmp_path, make_cfg())
        t0 = time.monotonic()
        core.raise_()
        await wait_until_async(lambda: len(core.notifies()) >= 4, 5, what="failsafe repeated once")
        n = core.notifies()
        assert [e.data["step"] for e in n[:4]] == [0, 1, 2, 2]
        assert [e.data["reason"] for e in n[:4]] == ["raised", "timeout", "timeout", "repeat"]
        assert [e.data["role"] for e in n[:3]] == ["room_nurse", "suite_staff", "resus"]
        assert n[2].data["alarm"]["escalation"]["failsafe"] is True
        # Step k starts k * STEP after the raise: the schedule, not timer lateness, sets it.
        starts = [e.data["alarm"]["escalation"]["step_started_at"] for e in n[:3]]
        from suitemon.daemon.alarms import parse_iso

        gaps = [parse_iso(b) - parse_iso(a) for a, b in itertools.pairwise(starts)]
        assert gaps[0] == pytest.approx(STEP, abs=0.002), gaps  # anchored at the old deadline
        assert STEP - 0.002 <= gaps[1] < STEP + 0.2, gaps  # the failsafe starts no earlier than now
        assert time.monotonic() - t0 >= 3 * STEP
        # every notification carries the site's protocol, naming the room
        for ev in n:
            assert ev.data["alarm"]["protocol"]["number"] == "2222"
            assert ev.data["alarm"]["protocol"]["room"] == "Uptake room 3"
        core.crash()

    run(main())


def test_accept_stops_the_ladder_and_is_journaled(tmp_path):
    async def main():
        clock = ManualClock()
        core = Core(tmp_path, make_cfg(), clock)
        core.raise_()
        clock.advance(STEP)
        assert [e.data["step"] for e in core.notifies()] == [0, 1]
        core.engine.accept("bells.uptake3.emergency", "rad1")
        clock.advance(10 * STEP)  # the ladder would have reached the failsafe and repeated it by now
        assert [e.data["step"] for e in core.notifies()] == [0, 1] and clock.pending() == 0
        rec = core.engine.get("bells.uptake3.emergency")
        assert rec.state == "acknowledged" and rec.escalation.accepted_by == "rad1"
        acc = list(core.journal.events_of_type("alarm.accepted"))
        assert len(acc) == 1 and acc[0].actor == "rad1" and acc[0].data["step"] == 1
        with pytest.raises(AlarmError, match="already accepted"):
            core.engine.accept("bells.uptake3.emergency", "nurse1")
        with pytest.raises(AlarmError, match="no open notification"):
            core.engine.reject("bells.uptake3.emergency", "nurse1")
        core.crash()

    run(main())


def test_all_recipients_rejecting_escalates_at_once(tmp_path):
    async def main():
        core = Core(tmp_path, make_cfg(step=5.0, failsafe=5.0))
        core.raise_()
        aid = "bells.uptake3.emergency"
        core.engine.reject(aid, "nurse1", "with another patient")
        core.engine.reject(aid, "visitor", "not mine")  # not a recipient: does not count
        core.engine.reject(aid, "nurse1")  # twice is once
        assert [e.data["step"] for e in core.notifies()] == [0]
        t = time.monotonic()
        core.engine.reject(aid, "nurse2")
        n = core.notifies()
        assert [(e.data["step"], e.data["reason"]) for e in n] == [(0, "raised"), (1, "all_rejected")]
        assert time.monotonic() - t < 0.1
        rejected = list(core.journal.events_of_type("alarm.rejected"))
        assert [(e.actor, e.data["step"]) for e in rejected] == [
            ("nurse1", 0),
            ("visitor", 0),
            ("nurse1", 0),
            ("nurse2", 0),
        ]
        assert rejected[0].data["reason"] == "with another patient"
        # step 1 has a fresh deadline and an empty reject list
        esc = core.engine.get(aid).escalation
        assert esc.step == 1 and esc.rejected_by == []
        for who in ("nurse1", "nurse2", "rad1"):
            core.engine.reject(aid, who)
        assert [e.data["step"] for e in core.notifies()] == [0, 1, 2]
        # the failsafe has no step after it: all rejecting tells it again at once
        core.engine.reject(aid, "switchboard")
        assert [(e.data["step"], e.data["reason"]) for e in core.notifies()][-1] == (2, "all_rejected")
        core.crash()

    run(main())


def test_ack_stops_a_call_ladder_but_not_an_emergency(tmp_path):
    async def main():
        core = Core(tmp_path, make_cfg())
        core.raise_("call", "bells.uptake3.call")
        core.raise_("emergency", "bells.uptake3.emergency")
        core.engine.acknowledge("bells.uptake3.call", "nurse1")
        core.engine.acknowledge("bells.uptake3.emergency", "nurse1")
        await wait_until_async(
            lambda: len(core.notifies()) >= 3, 5, what="emergency keeps escalating after ack"
        )
        assert [e.data["step"] for e in core.notifies("bells.uptake3.call")] == [0]
        assert [e.data["step"] for e in core.notifies()][:3] == [0, 1, 2]
        core.crash()
        core2 = Core(tmp_path, core.cfg)  # and it still climbs after a restart
        assert core2.escalator.resume() == 1
        core2.crash()

    run(main())


def test_reset_and_clear_cancel_the_timer(tmp_path):
    async def main():
        clock = ManualClock()
        core = Core(tmp_path, make_cfg(), clock)
        core.raise_()
        aid = "bells.uptake3.emergency"
        core.engine.apply(Condition(alarm_id=aid, type="emergency", present=False))
        core.engine.reset(aid, "nurse1", "patient fine")
        clock.advance(10 * STEP)
        assert [e.data["step"] for e in core.notifies()] == [0] and clock.pending() == 0
        assert core.types()[-1] == "alarm.reset"
        assert not core.escalator._timers
        core.crash()

    run(main())


def test_start_step_news2_critical_care(tmp_path):
    async def main():
        core = Core(tmp_path, make_cfg(step=5, failsafe=5))
        core.raise_(start_step=2)
        n = core.notifies()
        assert [(e.data["step"], e.data["role"]) for e in n] == [(2, "resus")]
        core.crash()

    run(main())


def test_jump_moves_forward_only(tmp_path):
    async def main():
        core = Core(tmp_path, make_cfg(step=5, failsafe=5))
        rec = core.raise_()
        assert core.escalator.jump(rec, 2, "news2") is True
        assert core.escalator.jump(rec, 1, "news2") is False
        assert [(e.data["step"], e.data["reason"]) for e in core.notifies()] == [(0, "raised"), (2, "news2")]
        core.crash()

    run(main())


def test_restart_mid_step_resumes_at_the_deadline_without_renotifying(tmp_path):
    async def main():
        cfg = make_cfg(step=0.8, failsafe=5)
        core = Core(tmp_path, cfg)
        core.raise_()
        await wait_until_async(lambda: len(core.notifies()) >= 2, 3, what="step 1")
        deadline = core.engine.get("bells.uptake3.emergency").escalation.deadline
        core.crash()
        await asyncio.sleep(0.2)  # down for a while, less than the step's time
        core2 = Core(tmp_path, cfg)
        assert core2.escalator.resume() == 1
        assert [e.data["step"] for e in core2.notifies()] == [0, 1]
        await wait_until_async(lambda: len(core2.notifies()) >= 3, 3, what="step 2 after restart")
        n = core2.notifies()
        assert [e.data["step"] for e in n] == [0, 1, 2]
        from suitemon.daemon.alarms import parse_iso

        late = parse_iso(n[2].ts) - parse_iso(deadline)
        assert -0.01 <= late < 0.3, f"step 2 came {late:.3f} s after the original deadline"
        core2.crash()

    run(main())


def test_restart_after_a_long_outage_catches_up_once_per_missed_step(tmp_path):
    async def main():
        cfg = make_cfg(step=0.3, failsafe=0.3)
        clock = ManualClock()
        core = Core(tmp_path, cfg, clock)
        core.raise_()
        core.crash()
        clock.advance(1.5)  # steps 1 and 2 and several failsafe repeats fell in the outage
        core2 = Core(tmp_path, cfg, clock)
        core2.escalator.resume()
        clock.advance(0)  # missed steps are told at once, not one timeout each
        assert [e.data["step"] for e in core2.notifies()] == [0, 1, 2]
        clock.advance(0.29)
        # each step missed in the outage is told once; the failsafe is not repeated in a burst
        assert [e.data["step"] for e in core2.notifies()] == [0, 1, 2]
        clock.advance(0.01)
        assert [e.data["step"] for e in core2.notifies()] == [0, 1, 2, 2]
        core2.crash()

    run(main())


def test_acknowledged_call_is_not_resumed_after_restart(tmp_path):
    async def main():
        cfg = make_cfg()
        clock = ManualClock()
        core = Core(tmp_path, cfg, clock)
        core.raise_("call", "bells.uptake3.call")
        core.engine.acknowledge("bells.uptake3.call", "nurse1")
        core.crash()
        core2 = Core(tmp_path, cfg, clock)
        assert core2.escalator.resume() == 0
        clock.advance(10 * STEP)
        assert len(core2.notifies("bells.uptake3.call")) == 1 and clock.pending() == 0
        core2.crash()

    run(main())


def test_notify_messages_carry_the_protocol_on_the_role_topic(tmp_path):
    async def main():
        core = Core(tmp_path, make_cfg(step=5, failsafe=5))
        core.raise_()
        ev = core.notifies()[0]
        msgs = messages_for(ev, Topics("suitemon", "esc"), "esc")
        import json

        notify = [m for m in msgs if m.topic == "suitemon/esc/notify/room_nurse"]
        assert len(notify) == 1 and notify[0].qos == 1
        body = json.loads(notify[0].payload)
        assert body["protocol"]["who"] == "Resus team" and body["protocol"]["room"] == "Uptake room 3"
        assert body["recipients"] == ["nurse1", "nurse2"] and body["step"] == 0
        core.crash()

    run(main())


def test_a_returning_condition_after_an_ack_reannunciates_and_restarts_the_ladder(tmp_path):
    async def main():
        clock = ManualClock()
        core = Core(tmp_path, make_cfg(), clock)
        aid = "bells.uptake3.call"
        core.raise_("call", aid)
        core.engine.acknowledge(aid, "nurse1")  # stops a call's ladder
        core.engine.apply(Condition(alarm_id=aid, type="call", present=False))
        clock.advance(10 * STEP)
        assert [e.data["step"] for e in core.notifies(aid)] == [0]
        core.raise_("call", aid)  # the patient presses again
        rec = core.engine.get(aid)
        assert (rec.state, rec.condition, rec.acknowledged_by) == ("active", "present", None)
        clock.advance(STEP)  # the restarted ladder climbs
        assert [(e.data["step"], e.data["reason"]) for e in core.notifies(aid)][:3] == [
            (0, "raised"),
            (0, "reannunciated"),
            (1, "timeout"),
        ]
        types = core.types(aid)
        assert types[:5] == [
            "alarm.raised",
            "alarm.notify",
            "alarm.acknowledged",
            "alarm.updated",
            "alarm.reannunciated",
        ]
        ev = next(e for e in core.journal.events_of_type("alarm.reannunciated") if e.alarm_id == aid)
        assert ev.data["previous"]["acknowledged_by"] == "nurse1"
        core.crash()
        core2 = Core(tmp_path, core.cfg)  # a restart finds it active with a running ladder
        assert core2.engine.get(aid).state == "active" and core2.escalator.resume() == 1
        core2.crash()

    run(main())


def test_an_unacknowledged_alarm_whose_condition_flickers_is_not_notified_twice(tmp_path):
    async def main():
        core = Core(tmp_path, make_cfg(step=5.0))
        aid = "bells.uptake3.call"
        core.raise_("call", aid)
        core.engine.apply(Condition(alarm_id=aid, type="call", present=False))
        core.raise_("call", aid)
        assert [e.data["reason"] for e in core.notifies(aid)] == ["raised"]
        assert "alarm.reannunciated" not in core.types(aid)
        core.crash()

    run(main())


def test_a_returning_emergency_is_told_again_at_its_current_step_never_lower(tmp_path):
    async def main():
        core = Core(tmp_path, make_cfg())
        aid = "bells.uptake3.emergency"
        core.raise_()
        core.engine.acknowledge(aid, "nurse1")  # an emergency's ladder climbs on after an ack
        await wait_until_async(lambda: len(core.notifies()) >= 2, 5, what="step 1")
        core.engine.apply(Condition(alarm_id=aid, type="emergency", present=False))
        core.raise_()
        last = core.notifies()[-1]
        assert (last.data["reason"], last.data["step"]) == ("reannunciated", core.notifies()[-2].data["step"])
        assert last.data["step"] >= 1 and core.engine.get(aid).state == "active"
        core.crash()

    run(main())
