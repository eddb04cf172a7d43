"""Facts shared between features in one process (occupancy of a room, mains state).

Small on purpose: a dict of values with watchers, so one feature (uptake timers) can
inform another's rules (radiation thresholds) without importing it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any


class Facts:
    def __init__(self) -> None:
        self._values: dict[tuple[str, str], Any] = {}
        self._watchers: dict[str, list[Callable[[str, Any], None]]] = defaultdict(list)

    def set(self, fact: str, key: str, value: Any) -> None:
        old = self._values.get((fact, key))
        self._values[(fact, key)] = value
        if old != value:
            for fn in self._watchers[fact]:
                fn(key, value)

    def get(self, fact: str, key: str, default: Any = None) -> Any:
        return self._values.get((fact, key), default)

    def watch(self, fact: str, fn: Callable[[str, Any], None]) -> None:
        self._watchers[fact].append(fn)
