"""The recorder: the one way anything becomes an event.

``record()`` appends to the journal's open transaction and schedules one commit for
everything recorded in the same loop iteration (group commit: one fsync for an
alarm storm's burst, not one per event). Only committed events go to the outbox.

If the disk refuses a write, nothing is lost and nothing goes quiet: the events stay
in memory with their ids and provisional sequence numbers, ``on_uncommitted`` publishes
them straight away (so a call bell pressed during a disk-full still reaches the nurses),
``on_fault`` raises the alarm, and the commit is retried every second. Once the disk
accepts writes, the same events (same ids, same seqs) are journaled and published again
through the outbox; consumers de-duplicate by event_id.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from suitemon.daemon.journal import Event, Journal, utc_now_iso

log = structlog.get_logger("suitemon.recorder")

RETRY_S = 1.0


class Recorder:
    def __init__(
        self,
        journal: Journal,
        *,
        on_commit: Callable[[int], None] = lambda seq: None,
        on_fault: Callable[[str | None], None] = lambda reason: None,
        on_uncommitted: Callable[[list[Event]], None] = lambda events: None,
    ):
        self.journal = journal
        self._on_commit = on_commit
        self._on_fault = on_fault
        self.on_uncommitted = on_uncommitted
        self._scheduled = False
        self._pending: list[Event] = []  # recorded, not yet durable, in order
        self.committed_seq = journal.last_seq
        self.fault: str | None = None
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        """Call fn(event) for every event once it is durable (in-process consumers)."""
        self._listeners.append(fn)

    def record(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        alarm_id: str | None = None,
        actor: str = "system",
        refers_to: str | None = None,
        event_id: str | None = None,
    ) -> Event:
        # event_id may be chosen by the caller when the data must name it (a notification's page ids).
        event = Event(
            seq=self.committed_seq + len(self._pending) + 1,
            event_id=event_id or str(uuid.uuid4()),
            ts=utc_now_iso(),
            type=type_,
            alarm_id=alarm_id,
            actor=actor,
            data=data,
            refers_to=refers_to,
        )
        self._pending.append(event)
        if self.fault is None:
            try:
                self._append(event)
            except sqlite3.Error as err:
                self._failed(err)  # publishes every pending event, this one included
        else:
            self._publish_uncommitted([event])
        self._schedule()
        return event

    def _append(self, ev: Event) -> None:
        self.journal.append(
            ev.type,
            ev.data,
            alarm_id=ev.alarm_id,
            actor=ev.actor,
            refers_to=ev.refers_to,
            ts=ev.ts,
            event_id=ev.event_id,
        )

    def _schedule(self, delay: float = 0.0) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if delay:
            loop.call_later(delay, self._flush)
        else:
            loop.call_soon(self._flush)

    def touch(self) -> None:
        """Ask for a commit of whatever else is in the open transaction (delivery cursor)."""
        self._schedule()

    def flush(self) -> None:
        """Commit now (commands before replying, shutdown, tools outside a loop)."""
        self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending and not self.journal.in_transaction:
            return
        try:
            if self.fault is not None:
                # Rebuild the transaction from memory after a failed commit: same ids, same order.
                self.journal.rollback()
                for ev in self._pending:
                    self._append(ev)
            first = self.committed_seq + 1
            self.journal.commit()
        except sqlite3.Error as err:
            self._failed(err)
            return
        durable, self._pending = self._pending, []
        if self.fault is not None:
            log.warning("journal writable again; held events written", events=len(durable))
            self.fault = None
            self._on_fault(None)
        self.committed_seq = self.journal.last_seq
        if self._listeners and durable:
            for ev in self.journal.events_after(first - 1, limit=self.committed_seq - first + 1):
                for fn in self._listeners:
                    fn(ev)
        self._on_commit(self.committed_seq)

    def _publish_uncommitted(self, events: list[Event]) -> None:
        try:
            self.on_uncommitted(events)
        except Exception:
            log.exception("publishing held events failed")

    def _failed(self, err: Exception) -> None:
        try:
            self.journal.rollback()
        except sqlite3.Error:
            pass
        if self.fault is None:
            reason = f"journal write failed: {err}"
            log.error(
                "JOURNAL WRITE FAILED: events are held in memory, published directly, and retried",
                error=str(err),
                pending=len(self._pending),
                path=str(self.journal.path),
            )
            self.fault = reason
            self._on_fault(reason)
            self._publish_uncommitted(list(self._pending))
        self._scheduled = False
        try:
            self._schedule(RETRY_S)
        except RuntimeError:  # no loop (tools): the caller sees the fault
            pass
