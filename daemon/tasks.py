"""Tasks that are never lost: every background task is kept and its failure logged."""

from __future__ import annotations

import asyncio
from typing import Coroutine

import structlog

log = structlog.get_logger("suitemon.tasks")


class TaskSet:
    def __init__(self):
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine, *, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
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
