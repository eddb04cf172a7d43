"""A small Modbus server (RTU over a pty, TCP on loopback) built for fault injection.

pymodbus's server cannot be told to answer late, corrupt a CRC, babble garbage or
pace its bytes at 9600 baud, and those are exactly what simulators exist for. The
PDU handling is plain Modbus: FC 1, 2, 3, 4, 5, 6, 15, 16 and exception responses.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from suitemon.simulators.pty_link import open_pty_link

log = structlog.get_logger("suitemon.sim.modbus")

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + struct.pack("<H", crc16(frame))


class ModbusError(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class Store(Protocol):
    def read(self, table: str, address: int, count: int) -> list[int]: ...
    def write(self, table: str, address: int, values: list[int]) -> None: ...


@dataclass
class Faults:
    """What a simulated device does wrong. Set through the control interface."""

    silent: bool = False  # no answer at all (device off the bus)
    delay_s: float = 0.0  # answer this late
    corrupt_crc: bool = False  # RTU: flip the CRC; TCP: send a garbled answer
    exception: int | None = None  # answer every request with this exception code
    garbage: int = 0  # bytes of noise sent before each answer

    def clear(self) -> None:
        self.__init__()


def handle_pdu(store: Store, pdu: bytes) -> bytes:
    """One request PDU -> one response PDU (exceptions included)."""
    if not pdu:
        raise ModbusError(ILLEGAL_FUNCTION)
    fc = pdu[0]
    try:
        if fc in (1, 2, 3, 4):
            addr, count = struct.unpack(">HH", pdu[1:5])
            if fc in (1, 2):
                if not 1 <= count <= 2000:
                    raise ModbusError(ILLEGAL_VALUE)
                bits = store.read("coil" if fc == 1 else "discrete", addr, count)
                packed = bytearray((count + 7) // 8)
                for i, b in enumerate(bits):
                    if b:
                        packed[i // 8] |= 1 << (i % 8)
                return bytes([fc, len(packed)]) + bytes(packed)
            if not 1 <= count <= 125:
                raise ModbusError(ILLEGAL_VALUE)
            regs = store.read("holding" if fc == 3 else "input", addr, count)
            return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *regs)
        if fc == 5:
            addr, value = struct.unpack(">HH", pdu[1:5])
            if value not in (0x0000, 0xFF00):
                raise ModbusError(ILLEGAL_VALUE)
            store.write("coil", addr, [1 if value else 0])
            return pdu[:5]
        if fc == 6:
            addr, value = struct.unpack(">HH", pdu[1:5])
            store.write("holding", addr, [value])
            return pdu[:5]
        if fc in (15, 16):
            addr, count, nbytes = struct.unpack(">HHB", pdu[1:6])
            data = pdu[6 : 6 + nbytes]
            # Quantity ranges and byte count as the Modbus application protocol (6.11, 6.12) states: a
            # byte count that disagrees with the quantity is exception 03 (it crashed the RTU line once).
            max_count, need = (1968, (count + 7) // 8) if fc == 15 else (123, 2 * count)
            if not 1 <= count <= max_count or nbytes != need or len(data) != nbytes:
                raise ModbusError(ILLEGAL_VALUE)
            if fc == 15:
                bits = [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]
                store.write("coil", addr, bits)
            else:
                store.write("holding", addr, list(struct.unpack(f">{count}H", data)))
            return pdu[:5]
    except struct.error:
        raise ModbusError(ILLEGAL_VALUE) from None
    raise ModbusError(ILLEGAL_FUNCTION)


@dataclass
class Unit:
    store: Store
    faults: Faults
    on_request: Callable[[], None] | None = None  # model update before each answer


def _respond(unit: Unit, pdu: bytes) -> bytes:
    if unit.on_request is not None:
        unit.on_request()
    if unit.faults.exception is not None:
        return bytes([pdu[0] | 0x80, unit.faults.exception])
    try:
        return handle_pdu(unit.store, pdu)
    except ModbusError as err:
        return bytes([(pdu[0] if pdu else 0) | 0x80, err.code])


# Request lengths (address + PDU + CRC) of the public function codes we do not serve, so that they get
# the exception response 01 the spec requires instead of silence (mbpoll -u, FC 17, found it).
OTHER_FIXED = {7: 4, 11: 4, 12: 4, 17: 4, 8: 8, 24: 6, 22: 10}
MAX_RTU_FRAME = 256


def rtu_request_length(buf: bytes) -> int | None:
    """Bytes in the RTU request at the start of buf, None if not known yet, -1 if buf starts with noise."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    if fc in OTHER_FIXED:
        return OTHER_FIXED[fc]
    if fc == 23:
        return 13 + buf[10] if len(buf) >= 11 else None
    # Any other code: a real slave finds the frame's end by the line's silence; we find it by its CRC
    # (libmodbus writes a request in one piece). No CRC fits: noise, resynchronise.
    for n in range(4, min(len(buf), MAX_RTU_FRAME) + 1):
        if crc16(buf[: n - 2]) == struct.unpack("<H", buf[n - 2 : n])[0]:
            return n
    return -1


class RtuServer:
    """The device end of a serial line: a pty pair whose other end is linked at ``path``."""

    def __init__(
        self,
        path: str,
        units: dict[int, Unit],
        *,
        baudrate: int = 9600,
        pace: bool = False,
        bits_per_char: int = 10,
    ):
        self.path = Path(path)
        self.units = units
        self.char_time = bits_per_char / baudrate
        self.pace = pace
        self._master: int | None = None
        self._slave: int | None = None
        self._buf = bytearray()
        self._queue: asyncio.Queue[bytes] | None = None
        self._task: asyncio.Task | None = None
        self.frames_in = 0
        self.bad_frames = 0

    async def start(self) -> None:
        master, slave = open_pty_link(self.path)
        self._master, self._slave = master, slave
        self._queue = asyncio.Queue()
        asyncio.get_running_loop().add_reader(master, self._readable)
        self._task = asyncio.create_task(self._serve(), name=f"rtu-sim:{self.path}")

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while nobody holds the other end
        if data and self._queue is not None:
            self._queue.put_nowait(data)

    async def _serve(self) -> None:
        assert self._queue is not None
        while True:
            self._buf += await self._queue.get()
            while True:
                n = rtu_request_length(bytes(self._buf))
                if n is None or (n > 0 and len(self._buf) < n):
                    break
                if n < 0:
                    del self._buf[0]
                    self.bad_frames += 1
                    continue
                frame = bytes(self._buf[:n])
                if crc16(frame[:-2]) != struct.unpack("<H", frame[-2:])[0]:
                    del self._buf[0]  # real slaves ignore a bad frame; slide to resync
                    self.bad_frames += 1
                    continue
                del self._buf[:n]
                self.frames_in += 1
                await self._answer(frame)

    async def _answer(self, frame: bytes) -> None:
        unit = self.units.get(frame[0])
        if unit is None or unit.faults.silent:
            return
        resp_pdu = _respond(unit, frame[1:-2])
        out = with_crc(bytes([frame[0]]) + resp_pdu)
        if unit.faults.corrupt_crc:
            out = out[:-2] + bytes([out[-2] ^ 0xFF, out[-1] ^ 0x5A])
        if unit.faults.garbage:
            out = bytes(random.getrandbits(8) for _ in range(unit.faults.garbage)) + out
        delay = unit.faults.delay_s
        if self.pace:
            # The request took len*char to arrive on a real line, then 3.5 chars of silence
            # ended it, and the answer takes len*char to go back.
            delay += (len(frame) + 3.5 + len(out)) * self.char_time
        if delay:
            await asyncio.sleep(delay)
        self._write(out)

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        try:
            os.write(self._master, data)
        except OSError:
            pass

    def write_raw(self, data: bytes) -> None:
        """Put bytes on the line (noise injection)."""
        self._write(data)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = None
        try:
            if self.path.is_symlink():
                self.path.unlink()
        except OSError:
            pass


class TcpServer:
    """Modbus TCP (MBAP) on a loopback address."""

    def __init__(self, host: str, port: int, units: dict[int, Unit]):
        self.host, self.port, self.units = host, port, units
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task] = set()
        self.frames_in = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port, reuse_address=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        me = asyncio.current_task()
        if me is not None:
            self._handlers.add(me)
            me.add_done_callback(self._handlers.discard)
        try:
            while True:
                head = await reader.readexactly(7)
                tid, pid, length, unit_id = struct.unpack(">HHHB", head)
                if pid != 0 or not 2 <= length <= 254:
                    break  # not Modbus: drop the connection like real gateways do
                pdu = await reader.readexactly(length - 1)
                self.frames_in += 1
                unit = self.units.get(unit_id) or self.units.get(0)
                if unit is None or unit.faults.silent:
                    continue
                resp = _respond(unit, pdu)
                out = struct.pack(">HHHB", tid, 0, len(resp) + 1, unit_id) + resp
                if unit.faults.corrupt_crc:
                    out = struct.pack(">HHHB", tid ^ 0x5A5A, 7, 3, unit_id) + b"\xff\xff"
                if unit.faults.garbage:
                    out = bytes(random.getrandbits(8) for _ in range(unit.faults.garbage)) + out
                if unit.faults.delay_s:
                    await asyncio.sleep(unit.faults.delay_s)
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def reset_connections(self) -> None:
        """Cable pulled: drop every client connection with a TCP reset."""
        for w in list(self._writers):
            sock = w.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(
                        __import__("socket").SOL_SOCKET,
                        __import__("socket").SO_LINGER,
                        struct.pack("ii", 1, 0),
                    )
                except OSError:
                    pass
            w.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.reset_connections()
            await self._server.wait_closed()
            self._server = None
        if self._handlers:
            # Stopped means stopped: each connection's handler has seen its close before we return.
            await asyncio.wait(set(self._handlers), timeout=1.0)
