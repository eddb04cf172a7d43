"""What a test leaves running when it ends: threads, asyncio tasks, open Modbus buses.

Used by the autouse fixture in conftest.py. Only what the test itself started counts: the
baseline is taken after the test's module- and session-scoped fixtures are up (pytest's,
xdist's and those fixtures' threads are in it), and threads get a grace period to finish.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from suitemon.drivers.modbus_link import Bus

GRACE_S = 2.0  # a thread told to stop (paho loop_stop, executor shutdown) may take a moment


class LeakGuard:
    def __init__(self, grace_s: float = GRACE_S) -> None:
        self.grace_s = grace_s
        self.threads = set(threading.enumerate())
        self.buses = dict(Bus._registry)
        self.tasks: list[str] = []

    def checked_run(self, real_run: Callable[..., Any]) -> Callable[..., Any]:
        """asyncio.run that notes the tasks still pending when its main coroutine returns
        (asyncio.run would cancel them without a word)."""
        guard = self

        def run(main, **kwargs):
            async def watched():
                result = await main
                me = asyncio.current_task()
                guard.tasks += [repr(t) for t in asyncio.all_tasks() if t is not me and not t.done()]
                return result

            return real_run(watched(), **kwargs)

        return run

    def leaks(self) -> list[str]:
        deadline = time.monotonic() + self.grace_s
        new = [
            t for t in threading.enumerate() if t not in self.threads and t is not threading.current_thread()
        ]
        for t in new:
            t.join(max(0.0, deadline - time.monotonic()))
        out = [
            f"thread {t.name!r} ({type(t).__name__}, target "
            f"{getattr(getattr(t, '_target', None), '__qualname__', '?')})"
            for t in new
            if t.is_alive()
        ]
        out += [f"asyncio task {r}" for r in self.tasks]
        out += [
            f"Modbus bus {key} (users {bus.users})"
            for key, bus in Bus._registry.items()
            if self.buses.get(key) is not bus and not bus.closed
        ]
        return out
