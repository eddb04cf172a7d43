"""The one place where blocking libraries' threads meet the asyncio core.

paho-mqtt runs its network loop in its own thread and pynetdicom runs each
association in a thread. Their callbacks never touch core state directly: they
``post`` a call into the event loop, or ``call`` and wait for its answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop or asyncio.get_running_loop()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) in the loop soon; safe from any thread, never blocks."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed between the check and the call
            pass

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 5.0) -> Any:
        """Run fn(*args) in the loop and wait for its result (from a foreign thread only)."""

        async def runner() -> Any:
            return fn(*args)

        fut: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(runner(), self.loop)
        return fut.result(timeout)

    def run_coro(self, coro: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
