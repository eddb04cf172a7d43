"""Refused connections and associations: every one counted, at most one journal row per peer and cause per minute.

300 bogus associations used to add 300 journal rows in 2.4 s (each also an MQTT event):
a flood that buries the record and fills the disk. The first refusal of a peer (address)
for a cause is journaled at once, so a misconfigured scanner is visible immediately; the
ones after it within the minute are counted and journaled as one row with their count
when the minute is over (or at stop). Nothing is dropped from the counter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

WINDOW_S = 60.0
SAMPLES = 5


@dataclass
class _Window:
    opened: float
    since_wall: float
    count: int = 0
    reason: str = ""
    calling_ae: list[str] = field(default_factory=list)


class Rejections:
    def __init__(
        self,
        record: Callable[[dict[str, Any]], None],
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._record = record
        self.window_s = window_s
        self._clock = clock
        self._open: dict[tuple[str, str], _Window] = {}

    def add(self, calling_ae: str | None, address: str, reason: str, category: str) -> bool:
        """Count one refusal; True if it was journaled now (the first of its window)."""
        key = (address, category)
        w = self._open.get(key)
        now = self._clock()
        if w is not None and now - w.opened >= self.window_s:
            self._close(key, w)
            w = None
        if w is None:
            self._open[key] = _Window(now, time.time())
            self._record(
                {
                    "calling_ae": calling_ae,
                    "address": address,
                    "reason": reason,
                    "category": category,
                    "count": 1,
                }
            )
            return True
        w.count += 1
        w.reason = reason
        if calling_ae and calling_ae not in w.calling_ae and len(w.calling_ae) < SAMPLES:
            w.calling_ae.append(calling_ae)
        return False

    def _close(self, key: tuple[str, str], w: _Window) -> None:
        del self._open[key]
        if w.count:
            self._record(
                {
                    "calling_ae": w.calling_ae[0] if w.calling_ae else None,
                    "address": key[0],
                    "reason": w.reason,
                    "category": key[1],
                    "count": w.count,
                    "repeated": True,
                    "calling_ae_seen": w.calling_ae,
                    "since": _iso(w.since_wall),
                    "until": _iso(time.time()),
                }
            )

    def tick(self) -> None:
        """Journal the counts of windows that are over; keep a window open while refusals go on."""
        now = self._clock()
        for key, w in list(self._open.items()):
            if now - w.opened >= self.window_s:
                had = w.count
                self._close(key, w)
                if had:  # the peer is still at it: the next minute is counted, not journaled at once
                    self._open[key] = _Window(now, time.time())

    def flush(self) -> None:
        for key, w in list(self._open.items()):
            self._close(key, w)


def _iso(t: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
