"""The driver lifecycle the base class keeps (drivers/base.py): open once, undo a failed open,
errors that keep their cause. Real sockets on 127.0.0.1: a refused port and a silent device."""

from __future__ import annotations

import asyncio

import pytest
from helpers import free_port
from service_helpers import points_device

from suitemon.daemon import kinds
from suitemon.daemon.config import parse_config
from suitemon.drivers.base import CommError, DeviceTimeout
from suitemon.drivers.modbus_link import Bus

# the fake silent device's connection handlers see the client's close only after the test's loop ends
pytestmark = pytest.mark.leaks_allowed(
    "the fake silent device's connection handlers see the client's close only after the test's loop ends"
)


def _driver(port: int):
    cfg = parse_config(
        {
            "site": {"id": "lc", "name": "l"},
            "devices": {"env": points_device(timeout_s=0.2, port=port, location=None)},
        }
    )
    dev = cfg.devices["env"]
    return kinds.driver_class(dev.kind)("env", dev), dev


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.read(512):  # takes every request, answers none
            pass
    except asyncio.CancelledError:
        pass
    finally:
        writer.close()


def test_a_failed_open_leaves_nothing_half_open():
    driver, dev = _driver(free_port())  # nothing listens there

    async def main() -> None:
        with pytest.raises(CommError):
            await driver.open()
        assert not driver.is_open
        assert driver.dev is None, "the failed open kept its device (and its share of the bus)"
        assert dev.bus_key not in Bus._registry, "the failed open left the bus registered"
        await driver.close()  # and closing after it is harmless

    asyncio.run(main())


def test_concurrent_opens_make_one_link_and_close_twice_is_harmless():
    port = free_port()
    driver, dev = _driver(port)
    connections: list[asyncio.StreamWriter] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await _silent(reader, writer)

    async def main() -> None:
        server = await asyncio.start_server(count, "127.0.0.1", port)
        try:
            await asyncio.gather(driver.open(), driver.open(), driver.open())
            await asyncio.sleep(0.05)
            assert driver.is_open and len(connections) == 1
            await driver.close()
            await driver.close()
            assert not driver.is_open and dev.bus_key not in Bus._registry
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_a_timeout_keeps_its_cause():
    port = free_port()
    driver, _ = _driver(port)

    async def main() -> None:
        server = await asyncio.start_server(_silent, "127.0.0.1", port)
        try:
            await driver.open()
            with pytest.raises(DeviceTimeout) as e:
                await asyncio.wait_for(driver.poll(), 5)
            assert e.value.__cause__ is not None, "the library's error was dropped (raise ... from None)"
        finally:
            await driver.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_every_driver_declares_its_poll_deadline():
    # The runner bounds each open and poll by it: a driver that reads more (a ring, a frame
    # stream) says so; the others get the base's bound from their response timeout.
    driver, dev = _driver(free_port())
    assert driver.poll_deadline == pytest.approx(dev.timeout_s * 4 + 0.5)
    for kind in kinds.names():
        assert isinstance(getattr(kinds.driver_class(kind), "poll_deadline", None), property), kind
