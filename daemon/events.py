"""The recorder: the one way anything becomes an event.

``record()`` appends to the journal's open transaction and schedules one commit for
everything recorded in the same loop iteration (group commit: one fsync for an
alarm storm's burst, not one per event). Only committed events are handed to the
publisher. If the disk refuses a commit, the events stay in memory, the commit is
retried, and ``on_fault`` tells the daemon so it can shout about it without the journal.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any, Callable

import structlog

from .journal import Event, Journal

log = structlog.get_logger("suitemon.recorder")

RETRY_S = 1.0


class Recorder:
    def __init__(self, journal: Journal, *, on_commit: Callable[[int], None] = lambda seq: None,
                 on_fault: Callable[[str | None], None] = lambda reason: None):
        self.journal = journal
        self._on_commit = on_commit
        self._on_fault = on_fault
        self._scheduled = False
        self._pending: list[tuple[tuple, dict]] = []  # (args, kwargs) of events not yet durable
        self.committed_seq = journal.last_seq
        self.fault: str | None = None
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        """Call fn(event) for every event once it is durable (in-process consumers)."""
        self._listeners.append(fn)

    def record(self, type_: str, data: dict[str, Any], *, alarm_id: str | None = None,
               actor: str = "system", refers_to: str | None = None) -> Event:
        args = (type_, data)
        kwargs = dict(alarm_id=alarm_id, actor=actor, refers_to=refers_to)
        self._pending.append((args, kwargs))
        event = None
        if self.fault is None:
            try:
                event = self.journal.append(*args, **kwargs)
            except sqlite3.Error as err:
                self._failed(err)
        if event is None:
            # Not durable yet: the caller still gets an event-shaped answer; seq 0 marks it.
            from .journal import utc_now_iso
            event = Event(seq=0, event_id="pending", ts=utc_now_iso(), type=type_, alarm_id=alarm_id,
                          actor=actor, data=data, refers_to=refers_to)
        self._schedule()
        return event

    def _schedule(self, delay: float = 0.0) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if delay:
            loop.call_later(delay, self._flush)
        else:
            loop.call_soon(self._flush)

    def flush(self) -> None:
        """Commit now (used at shutdown and in tools that run outside a loop)."""
        self._flush()

    def touch(self) -> None:
        """Ask for a commit of whatever else is in the open transaction (delivery cursor)."""
        self._schedule()

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending and not self.journal.in_transaction:
            return
        try:
            if self.fault is not None:
                # Rebuild the transaction from memory after a failed commit.
                self.journal.rollback()
                for args, kwargs in self._pending:
                    self.journal.append(*args, **kwargs)
            first = self.committed_seq + 1
            self.journal.commit()
        except sqlite3.Error as err:
            self._failed(err)
            self._schedule(RETRY_S)
            return
        self._pending.clear()
        if self.fault is not None:
            log.warning("journal writable again", previous_fault=self.fault)
            self.fault = None
            self._on_fault(None)
        self.committed_seq = self.journal.last_seq
        if self._listeners:
            for ev in self.journal.events_after(first - 1, limit=self.committed_seq - first + 1):
                for fn in self._listeners:
                    fn(ev)
        self._on_commit(self.committed_seq)

    def _failed(self, err: Exception) -> None:
        try:
            self.journal.rollback()
        except sqlite3.Error:
            pass
        reason = f"journal write failed: {err}"
        if self.fault is None:
            log.error("journal write failed; events held in memory and retried",
                      error=str(err), pending=len(self._pending), path=str(self.journal.path))
            self.fault = reason
            self._on_fault(reason)
        if not self._scheduled:
            try:
                self._schedule(RETRY_S)
            except RuntimeError:
                pass
