"""Delivery tracking shared by every channel (ESPA 4.4.4 pages, apprise messages).

Each state change is a ``paging.delivery`` journal event (and a ``delivery`` message); a failed or
unconfirmed delivery of the ladder's current step moves the ladder on at once (docs/paging.md).
"""

from __future__ import annotations

from typing import Any

import structlog

from suitemon.daemon.paging.pages import EVENT, Page

log = structlog.get_logger("suitemon.paging")


class Tracker:
    def __init__(self, ctx):
        self.ctx = ctx
        self._advanced: set[tuple[str, int]] = set()  # (occurrence, step) already moved on by this channel

    def _set(self, p: Page, state: str, reason: str | None = None, **extra: Any) -> None:
        p.state = state
        self.ctx.recorder.record(EVENT, p.data(reason=reason, **extra))
        self.ctx.metrics.inc(f"paging.{p.channel}.{state}")
        level = log.warning if state == "failed" else log.info
        level(
            "delivery " + state,
            page_id=p.page_id,
            channel=p.channel,
            alarm_id=p.alarm_id,
            recipient=p.recipient,
            reason=reason,
        )

    def _still_wanted(self, p: Page) -> bool:
        engine = self.ctx.engine
        rec = engine.alarms.get(p.alarm_id)
        return (
            rec is not None
            and rec.occurrence == p.occurrence
            and engine.escalator is not None
            and engine.escalator.escalating(rec)
        )

    def _move_on(self, p: Page, reason: str) -> None:
        if not self._still_wanted(p):
            return
        rec = self.ctx.engine.alarms[p.alarm_id]
        esc = rec.escalation
        if esc is None or esc.step != p.step or esc.failsafe or (p.occurrence, p.step) in self._advanced:
            return
        self._advanced.add((p.occurrence, p.step))
        log.warning(
            "not delivered: the ladder moves on now",
            alarm_id=p.alarm_id,
            step=p.step,
            reason=reason,
            channel=p.channel,
        )
        self.ctx.engine.escalator.advance(rec, reason)

    def _failed(self, p: Page, reason: str, **extra: Any) -> None:
        self._set(p, "failed", reason, **extra)
        self._move_on(p, "page_failed")
