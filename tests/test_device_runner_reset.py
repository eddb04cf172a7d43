"""The device runner resets a stuck link inside the poll, never in a task of its own.

A Modbus TCP device that accepts the connection and never answers (a real socket on 127.0.0.1):
the poll times out, and by the time ``poll_once()`` returns the link is closed and nothing is left
running behind the runner, so the next open (the runner's, or a shutdown command's) keeps its link.
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import free_port
from service_helpers import points_device

from suitemon.daemon import kinds
from suitemon.daemon.alarms import AlarmEngine
from suitemon.daemon.config import parse_config
from suitemon.daemon.context import Context
from suitemon.daemon.contract import Topics
from suitemon.daemon.devices import DeviceRunner
from suitemon.daemon.events import Recorder
from suitemon.daemon.facts import Facts
from suitemon.daemon.journal import Journal
from suitemon.daemon.metrics import Metrics

# the fake silent device's connection handlers see the client's close only after the test's loop ends
pytestmark = pytest.mark.leaks_allowed(
    "the fake silent device's connection handlers see the client's close only after the test's loop ends"
)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.read(512):  # takes every request, answers none
            pass
    except asyncio.CancelledError:
        pass  # asyncio.run ends the test with this connection still open
    finally:
        writer.close()


def test_a_reset_closes_the_link_before_the_next_open(tmp_path):
    port = free_port()
    cfg = parse_config(
        {
            "site": {"id": "rst", "name": "r"},
            "devices": {"env": points_device(poll_s=0.2, timeout_s=0.2, port=port, location=None)},
        }
    )
    dev = cfg.devices["env"]
    journal = Journal(tmp_path / "j.sqlite3")
    recorder = Recorder(journal)
    ctx = Context(
        cfg=cfg,
        recorder=recorder,
        engine=AlarmEngine(recorder, cfg),
        topics=Topics("suitemon", "rst"),
        metrics=Metrics(),
        facts=Facts(),
        publish_json=lambda t, o, retain=False: None,
    )

    async def main() -> None:
        server = await asyncio.start_server(_silent, "127.0.0.1", port)
        driver = kinds.driver_class(dev.kind)("env", dev)
        runner = DeviceRunner("env", dev, driver, kinds.rules_class(dev.kind)("env", dev, ctx), ctx)
        try:
            await driver.open()
            await asyncio.sleep(0.05)  # the server's side of the connection is up
            before = asyncio.all_tasks()
            await runner.poll_once()
            assert runner.failures == 1 and "DeviceTimeout" in (runner.last_error or "")
            assert not driver.is_open, "the stuck link is still open when the poll returns"
            assert not asyncio.all_tasks() - before, "a task was left behind the runner"

            # What a shutdown command does between two polls: open the link and use it.
            await driver.open()
            await asyncio.sleep(0.05)
            assert driver.is_open, "a late reset closed the link the next open made"
        finally:
            await driver.close()
            server.close()
            await server.wait_closed()

    try:
        asyncio.run(main())
    finally:
        recorder.flush()
        journal.close()
