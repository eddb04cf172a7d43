"""What a timer-driven part of the core reads the time from and arms its timers on.

The daemon uses ``LoopClock`` (wall time, the running loop's ``call_later``). Tests inject
a clock they advance by hand, so "nothing happened for three steps" is checked by moving
time past three deadlines, not by sleeping and hoping the machine was fast enough.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def __call__(self) -> float:
        """Wall-clock seconds (epoch): what deadlines in alarm records are written in."""

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle: ...


class LoopClock:
    def __call__(self) -> float:
        return time.time()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay, fn, *args)
