"""The leak guard (autouse in conftest.py) sees what a test leaves running, and only that."""

from __future__ import annotations

import asyncio
import threading

from helpers import free_port
from leak_guard import LeakGuard

from suitemon.daemon.config import parse_config
from suitemon.drivers.modbus_link import Bus


def test_a_thread_left_running_is_named_and_one_that_ends_is_not():
    guard = LeakGuard(grace_s=0.2)
    stop = threading.Event()
    stuck = threading.Thread(target=stop.wait, name="stuck-worker", daemon=True)
    quick = threading.Thread(target=lambda: None, name="quick-worker")
    stuck.start()
    quick.start()
    try:
        leaks = guard.leaks()
    finally:
        stop.set()
        stuck.join()
    assert any("'stuck-worker'" in leak for leak in leaks) and not any(
        "quick-worker" in leak for leak in leaks
    ), leaks


def test_a_task_pending_when_asyncio_run_returns_is_named():
    guard = LeakGuard(grace_s=0)

    async def main():
        asyncio.get_running_loop().create_task(asyncio.sleep(60), name="forgotten-timer")
        return 7

    # asyncio.runners.run: the real one (asyncio.run is the autouse guard's own during a test)
    assert guard.checked_run(asyncio.runners.run)(main()) == 7
    assert any("forgotten-timer" in leak for leak in guard.leaks()), guard.leaks()


def test_a_modbus_bus_not_released_is_named():
    cfg = parse_config(
        {
            "site": {"id": "g", "name": "g"},
            "devices": {"io": {"kind": "modbus_points", "transport": "tcp", "port": free_port()}},
        }
    )
    guard = LeakGuard(grace_s=0)

    async def main():
        bus = Bus.for_device(cfg.devices["io"])
        leaks = guard.leaks()
        await bus.release()
        return leaks, guard.leaks()

    held, released = asyncio.run(main())
    assert any(leak.startswith("Modbus bus") for leak in held) and not released, (held, released)
