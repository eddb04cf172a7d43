"""Escalation ladders: who is told, when, and what happens when nobody answers.

A ladder is data (config ``[ladders.*]``): steps of (role, timeout); the last step is
the failsafe and repeats until someone accepts. Deadlines are wall-clock times kept
in the alarm record, so a restarted daemon resumes at the step it had reached: an
overdue step escalates at once, a pending one waits only its remaining time, and
no earlier step is notified again.

A timeout starts the next step at the old deadline (the schedule), not when the timer
happened to fire: after an outage longer than several steps, each missed step is told
once, at once, and the ladder stands where the schedule says. The failsafe step starts
no earlier than now, so an outage never produces a burst of failsafe repeats.

Accepting stops a ladder. Acknowledging stops it too (it silences re-notification),
except for alarm types configured ``emergency = true``: a deterioration alert keeps
climbing until someone *accepts* it, because an ack at a display says "seen", not "I am going".
"""

from __future__ import annotations

import structlog

from suitemon.daemon.alarms import AlarmEngine, AlarmRecord, Escalation, iso, parse_iso
from suitemon.daemon.clock import Clock, LoopClock, TimerHandle
from suitemon.daemon.config import SuiteConfig

log = structlog.get_logger("suitemon.escalation")


class Escalator:
    def __init__(self, engine: AlarmEngine, cfg: SuiteConfig, *, clock: Clock | None = None):
        self.engine = engine
        self.cfg = cfg
        # Deadlines are read from and timers armed on the same clock (tests advance it by hand).
        self.clock: Clock = clock if clock is not None else LoopClock()
        self._timers: dict[str, TimerHandle] = {}
        engine.escalator = self

    def _enter_step(
        self, rec: AlarmRecord, ladder_id: str, step: int, reason: str, anchor: float | None = None
    ) -> None:
        ladder = self.cfg.ladders[ladder_id]
        step = min(step, len(ladder.steps) - 1)
        s = ladder.steps[step]
        now = self.clock()
        start = now if anchor is None else (max(anchor, now) if s.failsafe else anchor)
        rec.escalation = Escalation(
            ladder=ladder_id,
            step=step,
            role=s.role,
            recipients=list(self.cfg.roles[s.role].recipients),
            step_started_at=iso(start),
            deadline=iso(start + s.timeout_s),
            failsafe=s.failsafe,
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
            anchor = parse_iso(esc.deadline) if reason == "timeout" else None
            self._enter_step(rec, esc.ladder, esc.step + 1, reason, anchor)

    def jump(self, rec: AlarmRecord, step: int, reason: str) -> bool:
        """Move a running ladder forward to ``step`` (e.g. a NEWS2 >= 7 on an open alert).

        Never moves backwards; returns whether a step was entered (and notified).
        """
        esc = rec.escalation
        if esc is None or esc.accepted_by is not None or not rec.open or esc.ladder not in self.cfg.ladders:
            return False
        step = min(step, len(self.cfg.ladders[esc.ladder].steps) - 1)
        if step <= esc.step:
            return False
        self._enter_step(rec, esc.ladder, step, reason)
        return True

    def is_emergency(self, rec: AlarmRecord) -> bool:
        at = self.cfg.alarm_types.get(rec.type)
        return bool(at is not None and at.emergency)

    def escalating(self, rec: AlarmRecord) -> bool:
        """Does this alarm's ladder still run? Until accepted or closed; an ack ends it except for emergencies."""
        esc = rec.escalation
        if esc is None or esc.accepted_by is not None or not rec.open:
            return False
        return rec.state == "active" or self.is_emergency(rec)

    def acknowledged(self, rec: AlarmRecord) -> None:
        if not self.escalating(rec):
            self.stop(rec)

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
        self._timers[rec.alarm_id] = self.clock.call_later(delay, self._due, rec.alarm_id)

    def _due(self, alarm_id: str) -> None:
        self._timers.pop(alarm_id, None)
        rec = self.engine.alarms.get(alarm_id)
        if rec is None or not self.escalating(rec):
            return
        self.advance(rec, "timeout")

    def resume(self) -> int:
        """Re-arm timers for restored alarms; overdue steps fire at once."""
        n = 0
        for rec in list(self.engine.alarms.values()):
            esc = rec.escalation
            if esc is None or not self.escalating(rec):
                continue
            if esc.ladder not in self.cfg.ladders:
                # The ladder left the config while this alarm was open: say so, loudly.
                log.error(
                    "open alarm's ladder is no longer configured; its escalation cannot resume",
                    alarm_id=rec.alarm_id,
                    ladder=esc.ladder,
                )
                continue
            self._arm(rec)
            n += 1
        return n

    def cancel_all(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
