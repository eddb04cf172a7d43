"""A Modbus master link over RTU (serial) or TCP, built on pymodbus.

One :class:`Bus` per physical line (a serial port or a host:port): devices on the
same line share its lock, and the lock keeps the silence the line needs between
frames (3.5 characters by the spec; APC asks for >= 35 ms). pymodbus errors are
translated into the driver errors of :mod:`suitemon.drivers.base`; automatic reconnection
is off, because the device runner decides when to try again and counts failures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from suitemon.drivers.base import CommError, DeviceException, DeviceTimeout, Driver, FrameError
from suitemon.drivers.config import ModbusDeviceConfig
from suitemon.drivers.profile import BIT_TABLES, Point, Profile, decode, encode

# pymodbus logs every failed frame at ERROR; we count and report them ourselves.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Bus:
    """One physical line: a pymodbus client, a lock and the inter-frame silence."""

    _registry: ClassVar[dict[str, Bus]] = {}

    def __init__(self, cfg: ModbusDeviceConfig):
        self.key = cfg.bus_key
        self.cfg = cfg
        self.lock = asyncio.Lock()
        # Two users of one line (a poll and a command) may both find it closed; only one may open
        # it, or the loser's client leaks and, on a serial port opened exclusively, blocks every
        # later connect.
        self._connect_lock = asyncio.Lock()
        self.gap = cfg.frame_gap
        self._last_frame_end = 0.0
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self.users = 0
        self.closed = (
            False  # released by its last user: never reopened (a late request must not leak a client)
        )
        self.loop = _running_loop()  # its locks belong to this loop: another loop needs its own Bus

    @classmethod
    def for_device(cls, cfg: ModbusDeviceConfig) -> Bus:
        bus = cls._registry.get(cfg.bus_key)
        if bus is None or bus.loop is not _running_loop():
            bus = cls._registry[cfg.bus_key] = cls(cfg)
        bus.gap = max(bus.gap, cfg.frame_gap)
        bus.users += 1
        return bus

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        c = self.cfg
        if c.transport == "tcp":
            return AsyncModbusTcpClient(
                c.host, port=c.port, timeout=c.timeout_s, retries=0, reconnect_delay=0, reconnect_delay_max=0
            )
        if c.serial_port is None:  # the config refuses rtu without a port; a direct caller learns why
            raise CommError(f"Modbus rtu link {self.key}: no serial_port")
        return AsyncModbusSerialClient(
            c.serial_port,
            baudrate=c.baudrate,
            bytesize=c.bytesize,
            parity=c.parity,
            stopbits=c.stopbits,
            timeout=c.timeout_s,
            retries=0,
            reconnect_delay=0,
            reconnect_delay_max=0,
        )

    async def ensure_connected(self) -> None:
        if self.closed:
            raise CommError(f"Modbus link {self.key} was closed")
        if self.client is not None and self.client.connected:
            return
        async with self._connect_lock:
            if self.client is not None and self.client.connected:
                return
            await self._connect()

    async def _connect(self) -> None:
        await self.disconnect()
        client = self.client = self._make_client()
        try:
            ok = await asyncio.wait_for(client.connect(), self.cfg.timeout_s * 2 + 1)
        except (TimeoutError, OSError) as err:
            ok = False
            reason = str(err) or type(err).__name__
        else:
            reason = "connect refused"
        if not ok:
            await self.disconnect()
            where = (
                self.cfg.serial_port if self.cfg.transport == "rtu" else f"{self.cfg.host}:{self.cfg.port}"
            )
            raise CommError(f"cannot open Modbus {self.cfg.transport} link {where}: {reason}")

    async def disconnect(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken transport must not mask the real error
                pass

    async def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.closed = True
            await self.disconnect()
            if Bus._registry.get(self.key) is self:
                del Bus._registry[self.key]

    async def request(self, fn_name: str, *args: Any, unit: int, **kwargs: Any) -> ModbusPDU:
        async with self.lock:
            wait = self._last_frame_end + self.gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.ensure_connected()
            try:
                # By name: the read/write methods of pymodbus's client mixin, all answering a ModbusPDU.
                rr: ModbusPDU = await getattr(self.client, fn_name)(*args, device_id=unit, **kwargs)
            except ModbusIOException as err:
                await self.disconnect()
                text = str(err)
                if "CRC" in text or "frame" in text.lower():
                    raise FrameError(f"bad frame from unit {unit}: {text}") from err
                raise DeviceTimeout(f"no answer from unit {unit}: {text}") from err
            except (TimeoutError, ConnectionException, OSError) as err:
                await self.disconnect()
                raise DeviceTimeout(f"no answer from unit {unit}: {err or type(err).__name__}") from err
            except ModbusException as err:
                await self.disconnect()
                raise FrameError(f"Modbus error from unit {unit}: {err}") from err
            finally:
                self._last_frame_end = time.monotonic()
            if rr.isError():
                code = getattr(rr, "exception_code", None)
                raise DeviceException(f"unit {unit} answered exception {code} to {fn_name}", code)
            return rr


class ModbusDevice:
    """A device on a bus, read and written through its register profile."""

    def __init__(self, cfg: ModbusDeviceConfig, profile: Profile):
        self.cfg = cfg
        self.profile = profile
        self.bus = Bus.for_device(cfg)
        self.requests = 0

    async def read_table(self, table: str, start: int, count: int) -> list[int]:
        """Registers, or bits as bools (an int subtype), of one table."""
        fn = {
            "coil": "read_coils",
            "discrete": "read_discrete_inputs",
            "input": "read_input_registers",
            "holding": "read_holding_registers",
        }[table]
        rr = await self.bus.request(fn, start, count=count, unit=self.cfg.unit)
        self.requests += 1
        data: Sequence[int] = rr.bits if table in BIT_TABLES else rr.registers
        if len(data) < count:
            raise FrameError(f"short answer: asked {count} {table} items at {start}, got {len(data)}")
        return list(data[:count])

    async def read_points(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """Read every point (or the named ones) in as few requests as the profile allows."""
        values: dict[str, Any] = {}
        for table, start, count, points in self.profile.blocks(names):
            data = await self.read_table(table, start, count)
            for p in points:
                values[p.name] = decode(p, data[p.address - start : p.end - start])
        return values

    async def write_point(self, point: Point | str, value: Any) -> None:
        p = self.profile.point(point) if isinstance(point, str) else point
        unit = self.cfg.unit
        if p.table == "coil":
            await self.bus.request("write_coil", p.address, bool(value), unit=unit)
        elif p.table == "holding":
            regs = encode(p, value)
            if len(regs) == 1:
                await self.bus.request("write_register", p.address, regs[0], unit=unit)
            else:
                await self.bus.request("write_registers", p.address, regs, unit=unit)
        else:
            raise DeviceException(f"point {p.name} is in the read-only {p.table} table")
        self.requests += 1

    async def write_coils(self, start: int, values: list[bool]) -> None:
        await self.bus.request("write_coils", start, values, unit=self.cfg.unit)
        self.requests += 1

    async def close(self) -> None:
        await self.bus.release()


class ProfileDriver(Driver):
    """A Modbus device read through a register profile: the open/close every such driver shares.

    Subclasses implement ``poll()`` with ``self.dev.read_points()``; one that checks the device
    on open extends ``_open()`` (``await super()._open()`` first).
    """

    config: ModbusDeviceConfig

    def __init__(self, device_id: str, config: ModbusDeviceConfig, profile: Profile):
        super().__init__(device_id, config)
        self.profile = profile
        self.dev: ModbusDevice | None = None

    async def _open(self) -> None:
        if self.dev is None:
            self.dev = ModbusDevice(self.config, self.profile)
        await self.dev.bus.ensure_connected()

    async def _close(self) -> None:
        dev, self.dev = self.dev, None
        if dev is not None:
            await dev.close()
