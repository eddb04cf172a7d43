"""The bounded stop steps (daemon/tasks.py) the daemon and the board share: a stuck step is
given up on in time, and a stuck blocking call does not hold the process's exit."""

from __future__ import annotations

import asyncio
import threading
import time

from suitemon.daemon.tasks import bounded, in_daemon_thread


def test_a_stuck_blocking_call_is_left_behind_and_the_loop_still_exits():
    release = threading.Event()

    async def main() -> None:
        await in_daemon_thread(lambda: release.wait(10), 0.2, "stuck-join")

    t0 = time.monotonic()
    try:
        # asyncio.run waits for the default executor's threads at exit: run_in_executor would
        # hold here for the full 10 s; a daemon thread is not waited for.
        asyncio.run(main())
        assert time.monotonic() - t0 < 2.0
    finally:
        release.set()


def test_a_late_step_is_cancelled_and_the_others_finish():
    finished: list[str] = []
    cancelled: list[str] = []

    async def step(name: str, s: float) -> None:
        try:
            await asyncio.sleep(s)
            finished.append(name)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def main() -> float:
        t0 = time.monotonic()
        await bounded("test stop", [step("quick", 0.01), step("stuck", 30)], 0.3)
        await asyncio.sleep(0)  # the cancelled step runs its except clause
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < 1.5
    assert finished == ["quick"] and cancelled == ["stuck"]
