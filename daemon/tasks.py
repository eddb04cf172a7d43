"""Tasks that are never lost: every background task is kept and its failure logged."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("suitemon.tasks")

T = TypeVar("T")


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task failed", task=task.get_name(), error=repr(exc))

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self, timeout: float | None = None) -> None:
        """Cancel every task; with a timeout, stop waiting for tasks that ignore it."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            log.error("task ignored cancellation at stop", task=t.get_name())


async def bounded(what: str, coros: list[Coroutine[Any, Any, object]], timeout: float) -> None:
    """Run ``coros`` together for at most ``timeout`` s (a stop step): the late ones are cancelled, all logged."""
    if not coros:
        return
    tasks = [asyncio.ensure_future(c) for c in coros]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    failed = sum(1 for t in done if t.cancelled() or t.exception() is not None) + len(pending)
    if failed:
        log.warning("step incomplete at stop", step=what, failed=failed, timed_out=len(pending))


async def in_daemon_thread(fn: Callable[[], Any], timeout: float, what: str) -> None:
    """Run a blocking call in a daemon thread: unlike the executor, a stuck one cannot hold up exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def work() -> None:
        try:
            fn()
        finally:
            try:
                loop.call_soon_threadsafe(finish)
            except RuntimeError:
                pass  # the loop has gone: we were given up on already

    threading.Thread(target=work, name=what, daemon=True).start()
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        log.warning("blocking call did not finish in time", call=what, timeout_s=round(timeout, 2))
