"""Login throttling that counts attempts in flight and cannot be flushed.

Each login attempt reserves a slot before it goes to the broker, so 40 wrong
passwords sent in parallel meet the same limit as 40 sent one after another (a check
of past failures alone lets them all through: none has failed yet).

Keys: a board user's name is throttled per client address and name, so one nurse
mistyping does not lock the shared station out for her colleagues. Names that are not
board users share one bucket per address: made-up names cannot each get an entry. The
table is bounded, and when it is full of live entries new keys are refused rather
than old ones evicted: evicting would unlock the oldest entry, which is exactly the
one an attacker is locked out by.
"""

from __future__ import annotations

import time

LOCKOUT_FAILURES = 5
UNKNOWN_NAME_FAILURES = 10
LOCKOUT_S = 60.0
MAX_KEYS = 4096


class LoginThrottle:
    def __init__(self, *, clock=time.monotonic, max_keys: int = MAX_KEYS):
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[str, list[float]] = {}
        self._in_flight: dict[str, int] = {}

    @staticmethod
    def key(address: str, login: str, known: bool) -> str:
        return f"{address}|{login}" if known else f"{address}|?"

    @staticmethod
    def _limit(key: str) -> int:
        return UNKNOWN_NAME_FAILURES if key.endswith("|?") else LOCKOUT_FAILURES

    def _recent(self, key: str, now: float) -> int:
        times = [t for t in self._failures.get(key, ()) if now - t < LOCKOUT_S]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return len(times)

    def _sweep(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)

    def begin(self, key: str) -> bool:
        """Reserve an attempt; False means refuse it (too many recent or pending, or the table is full)."""
        now = self.clock()
        if self._recent(key, now) + self._in_flight.get(key, 0) >= self._limit(key):
            return False
        if key not in self._failures and key not in self._in_flight and self.size >= self.max_keys:
            self._sweep(now)
            if self.size >= self.max_keys:
                return False  # fail closed: see the module docstring
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return True

    def end(self, key: str, ok: bool) -> None:
        """Settle a reserved attempt: a success clears the key, anything else counts as a failure."""
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)
        if ok:
            self._failures.pop(key, None)
        else:
            self._failures.setdefault(key, []).append(self.clock())

    @property
    def size(self) -> int:
        return len(self._failures.keys() | self._in_flight.keys())
