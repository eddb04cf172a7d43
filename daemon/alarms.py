"""Alarm records and the alarm engine.

The alarm *condition* (is the cause still there?) is kept apart from the alarm
*signal* state (active, acknowledged, closed) and from the escalation position,
as IEC 60601-1-8 asks. Every change is a journal event carrying a full snapshot
of the record, so the newest event of each alarm is enough to rebuild the table
after a restart, and the retained MQTT alarm topic can be derived from the event.

An alarm's id is the stable key of its cause (``ups.on_battery``,
``bells.room3.emergency``); each raise starts a new *occurrence*.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from suitemon.daemon import delivery_plan
from suitemon.daemon.config import SuiteConfig
from suitemon.daemon.events import Recorder
from suitemon.daemon.journal import Event

log = structlog.get_logger("suitemon.alarms")

PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}
OPEN_STATES = ("active", "acknowledged")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Condition:
    """What a rule says about one possible alarm: its cause is present or absent."""

    alarm_id: str
    type: str
    present: bool
    priority: str = "medium"
    kind: str = "technical"
    source: str = ""
    location: str | None = None
    message: str = ""
    latching: bool = False
    ladder: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    start_step: int = 0


@dataclass(frozen=True)
class Reset:
    """A rule's request to close a latched alarm (e.g. the cancel button pressed in the room)."""

    alarm_id: str
    actor: str
    reason: str = ""


@dataclass
class Escalation:
    ladder: str
    step: int
    role: str
    recipients: list[str]
    step_started_at: str
    deadline: str
    failsafe: bool
    rejected_by: list[str] = field(default_factory=list)
    accepted_by: str | None = None


@dataclass
class AlarmRecord:
    alarm_id: str
    occurrence: str
    type: str
    priority: str
    kind: str
    latching: bool
    condition: str  # "present" | "absent"
    state: str  # "active" | "acknowledged" | "closed"
    source: str
    location: str | None
    message: str
    raised_at: str
    updated_at: str
    details: dict[str, Any] = field(default_factory=dict)
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    closed_at: str | None = None
    closed_by: str | None = None
    closed_reason: str | None = None
    escalation: Escalation | None = None
    protocol: dict[str, Any] | None = None

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_snapshot(cls, d: Mapping[str, Any]) -> AlarmRecord:
        d = dict(d)
        esc = d.pop("escalation", None)
        rec = cls(**d)
        rec.escalation = Escalation(**esc) if esc else None
        return rec


class EscalatorPort(Protocol):
    """What the engine asks of its escalator (daemon/escalation.py, which imports this module)."""

    def start(
        self, rec: AlarmRecord, ladder_id: str, start_step: int = 0, reason: str = "raised"
    ) -> None: ...
    def escalating(self, rec: AlarmRecord) -> bool: ...
    def acknowledged(self, rec: AlarmRecord) -> None: ...
    def advance(self, rec: AlarmRecord, reason: str) -> None: ...
    def jump(self, rec: AlarmRecord, step: int, reason: str) -> bool: ...
    def stop(self, rec: AlarmRecord) -> None: ...


class AlarmError(Exception):
    """A command on an alarm that cannot be carried out (unknown id, wrong state)."""


class AlarmEngine:
    """Owns the open alarms. Single-threaded: call from the event loop only."""

    def __init__(
        self, recorder: Recorder, cfg: SuiteConfig | None, *, clock: Callable[[], float] = time.time
    ):
        self.recorder = recorder
        self.cfg = cfg
        self.clock = clock
        self.alarms: dict[str, AlarmRecord] = {}
        self.escalator: EscalatorPort | None = None  # set by Escalator.attach
        # Features whose alarms may only be closed where the cause is (call bells: in the room)
        # add fn(rec) -> reason to refuse a remote reset, or None to allow it.
        self.remote_reset_guards: list[Callable[[AlarmRecord], str | None]] = []

    # -- restore --------------------------------------------------------
    def restore(self, events: Iterable[Event]) -> int:
        n = 0
        for ev in events:
            snap = ev.data.get("alarm")
            if not snap:
                continue
            rec = AlarmRecord.from_snapshot(snap)
            if rec.open:
                self.alarms[rec.alarm_id] = rec
                n += 1
        log.info("alarms restored from journal", open=n)
        return n

    # -- queries --------------------------------------------------------
    def open_alarms(self) -> list[AlarmRecord]:
        return sorted(self.alarms.values(), key=lambda a: (PRIORITY_RANK[a.priority], a.raised_at))

    def get(self, alarm_id: str) -> AlarmRecord:
        rec = self.alarms.get(alarm_id)
        if rec is None:
            raise AlarmError(f"no open alarm '{alarm_id}'")
        return rec

    # -- rule input -----------------------------------------------------
    def apply(self, item: Condition | Reset) -> Event | None:
        if isinstance(item, Reset):
            rec = self.alarms.get(item.alarm_id)
            if rec is None:
                return None
            return self._close(rec, "alarm.reset", item.actor, item.reason or "reset in the room")
        if item.present:
            return self._present(item)
        return self._absent(item)

    def apply_all(self, items: Iterable[Condition | Reset]) -> None:
        for item in items:
            self.apply(item)

    def _record(self, type_: str, rec: AlarmRecord, actor: str = "system", **extra: Any) -> Event:
        return self.recorder.record(
            type_, {"alarm": rec.snapshot(), **extra}, alarm_id=rec.alarm_id, actor=actor
        )

    def _present(self, c: Condition) -> Event | None:
        now = iso(self.clock())
        rec = self.alarms.get(c.alarm_id)
        if rec is None:
            at = self.cfg.alarm_types.get(c.type) if self.cfg is not None else None
            protocol = None
            ladder = c.ladder or (at.ladder if at else None)
            if at is not None and at.protocol and self.cfg is not None:
                protocol = self.cfg.protocols[at.protocol].model_dump()
                area = self.cfg.areas.get(c.location) if c.location else None
                if area is not None:
                    # "Where": the site's location plus the room, so the caller can give both.
                    protocol["room"] = area.name
            rec = AlarmRecord(
                alarm_id=c.alarm_id,
                occurrence=str(uuid.uuid4()),
                type=c.type,
                priority=at.priority if at else c.priority,
                kind=at.kind if at else c.kind,
                latching=at.latching if at else c.latching,
                condition="present",
                state="active",
                source=c.source,
                location=c.location,
                message=c.message,
                raised_at=now,
                updated_at=now,
                details=dict(c.details),
                protocol=protocol,
            )
            self.alarms[c.alarm_id] = rec
            ev = self._record("alarm.raised", rec)
            log.warning("alarm raised", alarm_id=rec.alarm_id, priority=rec.priority, message=rec.message)
            if ladder and self.escalator is not None:
                self.escalator.start(rec, ladder, c.start_step, reason="raised")
            return ev
        if rec.condition == "absent" and rec.state == "acknowledged":
            return self._reannunciate(rec, c, now)
        changed = rec.condition != "present" or rec.message != c.message or dict(c.details) != rec.details
        if not changed:
            return None
        rec.condition = "present"
        rec.message = c.message
        rec.details = dict(c.details)
        rec.updated_at = now
        return self._record("alarm.updated", rec)

    def _reannunciate(self, rec: AlarmRecord, c: Condition, now: str) -> Event:
        """The cause of an acknowledged latched alarm ended and came back (a second press, a second spill).

        An acknowledgement covers the condition present when it was given, not a new one: the alarm
        sounds again and its ladder starts over (a ladder still climbing, as an emergency's does after
        an ack, is told again at its current step). The previous acknowledgement stays in the journal."""
        previous = {
            "acknowledged_by": rec.acknowledged_by,
            "acknowledged_at": rec.acknowledged_at,
            "accepted_by": rec.escalation.accepted_by if rec.escalation else None,
        }
        # An emergency's ladder keeps climbing after an ack: tell its current step again, never go back.
        running = self.escalator is not None and rec.escalation is not None and self.escalator.escalating(rec)
        step = max(c.start_step, rec.escalation.step) if running and rec.escalation else c.start_step
        rec.condition, rec.state, rec.message, rec.details, rec.updated_at = (
            "present",
            "active",
            c.message,
            dict(c.details),
            now,
        )
        rec.acknowledged_by = rec.acknowledged_at = None
        ev = self._record("alarm.reannunciated", rec, previous=previous)
        log.warning(
            "alarm re-annunciated: its condition returned after an acknowledgement",
            alarm_id=rec.alarm_id,
            previous_ack=previous["acknowledged_by"],
        )
        at = self.cfg.alarm_types.get(c.type) if self.cfg is not None else None
        ladder = (
            (rec.escalation.ladder if rec.escalation else None) or c.ladder or (at.ladder if at else None)
        )
        if ladder and self.escalator is not None and self.cfg is not None and ladder in self.cfg.ladders:
            self.escalator.start(rec, ladder, step, reason="reannunciated")
        return ev

    def _absent(self, c: Condition) -> Event | None:
        rec = self.alarms.get(c.alarm_id)
        if rec is None or rec.condition == "absent":
            return None
        rec.condition = "absent"
        rec.updated_at = iso(self.clock())
        if not rec.latching:
            return self._close(rec, "alarm.cleared", "system", "condition ended")
        return self._record("alarm.updated", rec)

    # -- people ---------------------------------------------------------
    def acknowledge(self, alarm_id: str, actor: str, note: str | None = None) -> Event:
        rec = self.get(alarm_id)
        if rec.state == "acknowledged":
            raise AlarmError(f"alarm '{alarm_id}' is already acknowledged by {rec.acknowledged_by}")
        now = iso(self.clock())
        rec.state, rec.acknowledged_by, rec.acknowledged_at, rec.updated_at = "acknowledged", actor, now, now
        if self.escalator is not None:
            self.escalator.acknowledged(rec)
        return self._record("alarm.acknowledged", rec, actor, note=note)

    def reset(self, alarm_id: str, actor: str, note: str | None = None) -> Event:
        rec = self.get(alarm_id)
        if rec.condition == "present":
            raise AlarmError(f"alarm '{alarm_id}' cannot be reset: its condition is still present")
        for guard in self.remote_reset_guards:
            why = guard(rec)
            if why:
                raise AlarmError(why)
        return self._close(rec, "alarm.reset", actor, note or "reset by command")

    def force_close(self, alarm_id: str, actor: str, reason: str, fault: str) -> Event:
        """Close an alarm whose own way of closing is broken (the feature checks that); journaled as such."""
        rec = self.get(alarm_id)
        log.warning("alarm FORCE-CLOSED", alarm_id=alarm_id, by=actor, reason=reason, fault=fault)
        return self._close(
            rec,
            "alarm.force_closed",
            actor,
            f"force-closed: {reason} (fault: {fault})",
            extra={"reason": reason, "fault": fault},
        )

    def accept(self, alarm_id: str, actor: str) -> Event:
        rec = self.get(alarm_id)
        if rec.escalation is None:
            raise AlarmError(f"alarm '{alarm_id}' has no notification to accept")
        if rec.escalation.accepted_by is not None:
            raise AlarmError(f"alarm '{alarm_id}' was already accepted by {rec.escalation.accepted_by}")
        now = iso(self.clock())
        rec.escalation.accepted_by = actor
        if rec.state == "active":
            rec.state, rec.acknowledged_by, rec.acknowledged_at = "acknowledged", actor, now
        rec.updated_at = now
        if self.escalator is not None:
            self.escalator.stop(rec)
        return self._record("alarm.accepted", rec, actor, step=rec.escalation.step)

    def reject(self, alarm_id: str, actor: str, reason: str | None = None) -> Event:
        rec = self.get(alarm_id)
        esc = rec.escalation
        if esc is None or esc.accepted_by is not None:
            raise AlarmError(f"alarm '{alarm_id}' has no open notification to reject")
        if actor not in esc.rejected_by:
            esc.rejected_by.append(actor)
        rec.updated_at = iso(self.clock())
        ev = self._record("alarm.rejected", rec, actor, step=esc.step, reason=reason)
        if set(esc.recipients) <= set(esc.rejected_by) and self.escalator is not None:
            self.escalator.advance(rec, reason="all_rejected")
        return ev

    def _close(
        self, rec: AlarmRecord, type_: str, actor: str, reason: str, extra: dict[str, Any] | None = None
    ) -> Event:
        now = iso(self.clock())
        rec.state, rec.closed_at, rec.closed_by, rec.closed_reason, rec.updated_at = (
            "closed",
            now,
            actor,
            reason,
            now,
        )
        if self.escalator is not None:
            self.escalator.stop(rec)
        self.alarms.pop(rec.alarm_id, None)
        log.info("alarm closed", alarm_id=rec.alarm_id, by=actor, reason=reason)
        return self._record(type_, rec, actor, **(extra or {}))

    def record_escalation(self, rec: AlarmRecord, reason: str) -> Event:
        """Journal a notification step (called by the escalator)."""
        esc = rec.escalation
        assert esc is not None
        # The event names its own page ids, so its id is chosen here (daemon/delivery_plan.py).
        event_id = str(uuid.uuid4())
        snap = rec.snapshot()
        data = {
            "alarm": snap,
            "step": esc.step,
            "role": esc.role,
            "recipients": list(esc.recipients),
            "reason": reason,
            "delivery": delivery_plan.plan(self.cfg, snap, esc.recipients, event_id),
        }
        return self.recorder.record("alarm.notify", data, alarm_id=rec.alarm_id, event_id=event_id)


__all__ = [
    "PRIORITY_RANK",
    "AlarmEngine",
    "AlarmError",
    "AlarmRecord",
    "Condition",
    "Escalation",
    "Reset",
    "iso",
    "parse_iso",
]
