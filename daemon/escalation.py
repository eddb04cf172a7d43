"""Escalation ladders: who is told, when, and what happens when nobody answers.

A ladder is data (config ``[ladders.*]``): steps of (role, timeout); the last step is
the failsafe and repeats until someone accepts. Deadlines are wall-clock times kept
in the alarm record, so a restarted daemon resumes at the step it had reached: an
overdue step escalates at once, a pending one waits only its remaining time, and
no earlier step is notified again.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from .alarms import AlarmEngine, AlarmRecord, Escalation, iso, parse_iso

log = structlog.get_logger("suitemon.escalation")


class Escalator:
    def __init__(self, engine: AlarmEngine, cfg, *, clock=time.time):
        self.engine = engine
        self.cfg = cfg
        self.clock = clock
        self._timers: dict[str, asyncio.TimerHandle] = {}
        engine.escalator = self

    def _enter_step(self, rec: AlarmRecord, ladder_id: str, step: int, reason: str) -> None:
        ladder = self.cfg.ladders[ladder_id]
        step = min(step, len(ladder.steps) - 1)
        s = ladder.steps[step]
        now = self.clock()
        rec.escalation = Escalation(
            ladder=ladder_id, step=step, role=s.role,
            recipients=list(self.cfg.roles[s.role].recipients),
            step_started_at=iso(now), deadline=iso(now + s.timeout_s), failsafe=s.failsafe,
        )
        rec.updated_at = iso(now)
        self.engine.record_escalation(rec, reason)
        log.warning("alarm notified", alarm_id=rec.alarm_id, step=step, role=s.role, reason=reason)
        self._arm(rec)

    def start(self, rec: AlarmRecord, ladder_id: str, start_step: int = 0, reason: str = "raised") -> None:
        self._enter_step(rec, ladder_id, start_step, reason)

    def advance(self, rec: AlarmRecord, reason: str) -> None:
        esc = rec.escalation
        if esc is None or esc.accepted_by is not None or not rec.open:
            return
        if esc.failsafe:
            # The failsafe step has no step after it: tell it again.
            self._enter_step(rec, esc.ladder, esc.step, "repeat" if reason == "timeout" else reason)
        else:
            self._enter_step(rec, esc.ladder, esc.step + 1, reason)

    def stop(self, rec: AlarmRecord) -> None:
        handle = self._timers.pop(rec.alarm_id, None)
        if handle is not None:
            handle.cancel()

    def _arm(self, rec: AlarmRecord) -> None:
        self.stop(rec)
        esc = rec.escalation
        if esc is None or esc.accepted_by is not None:
            return
        delay = max(0.0, parse_iso(esc.deadline) - self.clock())
        loop = asyncio.get_running_loop()
        self._timers[rec.alarm_id] = loop.call_later(delay, self._due, rec.alarm_id)

    def _due(self, alarm_id: str) -> None:
        self._timers.pop(alarm_id, None)
        rec = self.engine.alarms.get(alarm_id)
        if rec is None or rec.state != "active":
            return
        self.advance(rec, "timeout")

    def resume(self) -> int:
        """Re-arm timers for restored alarms; overdue steps fire at once."""
        n = 0
        for rec in list(self.engine.alarms.values()):
            esc = rec.escalation
            if rec.state == "active" and esc is not None and esc.accepted_by is None \
                    and esc.ladder in self.cfg.ladders:
                self._arm(rec)
                n += 1
        return n

    def cancel_all(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
