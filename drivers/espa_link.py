"""The control-station end of an ESPA 4.4.4 line (pyserial + asyncio, no thread).

suitemon is the master: to page it *selects* the paging system (``1 ENQ 2 ENQ``), waits for ACK,
sends the block, waits for ACK (NAK: retransmit), then ends with EOT. To learn what happened to
a call it *polls* the paging system (``EOT 2 ENQ``): the answer is EOT (nothing to report) or a
status block (header 2, records 1 call address, 7 call status, 8 pager status) which is ACKed (NAK
when its BCC is wrong, so it is sent again). Every wait is bounded; every retransmission is counted
against ``retries``. One lock: one exchange on the line at a time.

The port is opened by pyserial (baud rate, 7E1 framing), made non-blocking and watched with
``loop.add_reader``, as drivers/ludlum375.py does.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

import serial
import structlog

from suitemon.drivers.espa444 import (
    ACK,
    EOT,
    NAK,
    BadBlock,
    Block,
    Control,
    Decoder,
    poll_sequence,
    select_sequence,
)
from suitemon.drivers.serial_reader import SerialOpenError, open_for_reader

log = structlog.get_logger("suitemon.paging.link")


class LinkError(Exception):
    """The line cannot be used (port missing, closed, or the far end went away)."""


@dataclass(frozen=True)
class LineSettings:
    port: str
    baudrate: int = 9600
    bytesize: int = 7
    parity: str = "E"
    stopbits: int = 1
    own_address: str = "1"
    peer_address: str = "2"
    response_timeout_s: float = 2.0
    retries: int = 3
    busy_backoff_s: float = 0.2


@dataclass
class CallOutcome:
    """How one call block fared on the line."""

    ok: bool
    reason: str  # "acknowledged", "nak", "busy", "no_answer", "link"
    attempts: int
    sent: bool  # the block itself went on the line at least once
    first_block_at: float | None = None  # monotonic time the block's first byte was written


@dataclass
class PollOutcome:
    answered: bool
    statuses: list[Block] = field(default_factory=list)


class EspaLink:
    def __init__(self, settings: LineSettings, *, counters: dict[str, int] | None = None):
        self.s = settings
        self.decoder = Decoder()
        self._ser: serial.Serial | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # None: the line was lost (wakes a waiter at once).
        self._items: asyncio.Queue[Control | Block | BadBlock | None] = asyncio.Queue()
        self.lock = asyncio.Lock()
        self.error: str | None = None
        self.counters = counters if counters is not None else {}

    @property
    def is_open(self) -> bool:
        return self._ser is not None and self.error is None

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # -- the port ---------------------------------------------------------------------
    async def open(self) -> None:
        s = self.s
        try:
            self._ser, self._fd = open_for_reader(
                s.port,
                baudrate=s.baudrate,
                bytesize=s.bytesize,
                parity=s.parity,
                stopbits=s.stopbits,
                write_timeout=max(1.0, s.response_timeout_s),
            )
        except SerialOpenError as err:
            raise LinkError(str(err)) from err
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)
        self.decoder.reset()
        self._items = asyncio.Queue()
        self.error = None

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:  # closed since the event loop saw the port readable
            return
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._lost(f"serial read failed: {err.strerror or err}")
            return
        if not data:
            self._lost("serial line closed")
            return
        before = dict(self.decoder.counts)
        for item in self.decoder.feed(data):
            self._items.put_nowait(item)
        for k, v in self.decoder.counts.items():
            if v != before.get(k, 0) and k in ("garbage_bytes", "bad_bcc", "bad_blocks"):
                self._count(f"paging.line.{k}", v - before.get(k, 0))
                log.warning("bad data on the paging line", what=k, total=v)

    def _lost(self, why: str) -> None:
        if self.error is None:
            log.error("paging line lost", port=self.s.port, error=why)
        self.error = why
        self._detach()
        self._items.put_nowait(None)  # wake a waiter at once

    def _detach(self) -> None:
        if self._loop is not None and self._fd is not None:
            try:
                self._loop.remove_reader(self._fd)
            except (ValueError, OSError):
                pass

    async def close(self) -> None:
        self._detach()
        ser, self._ser, self._fd = self._ser, None, None
        if ser is not None:
            try:
                ser.close()
            except (OSError, serial.SerialException):
                pass

    def _write(self, data: bytes) -> None:
        if self._ser is None or self.error is not None:
            raise LinkError(self.error or "paging line not open")
        try:
            self._ser.write(data)
        except (serial.SerialException, OSError) as err:
            self._lost(f"serial write failed: {err}")
            raise LinkError(self.error) from err

    def _drain_stale(self) -> None:
        while not self._items.empty():
            item = self._items.get_nowait()
            if item is not None:
                self._count("paging.line.stale_items")

    async def _expect(self) -> Control | Block | BadBlock | None:
        """The next item from the far end, or None when the response timer runs out."""
        try:
            item = await asyncio.wait_for(self._items.get(), self.s.response_timeout_s)
        except TimeoutError:
            return None
        if item is None:
            raise LinkError(self.error or "paging line lost")
        return item

    # -- selecting: one call --------------------------------------------------------------
    async def send_block(self, block: bytes) -> CallOutcome:
        """Select the paging system and hand it one block; retransmit on NAK or silence, bounded."""
        async with self.lock:
            return await self._send_block(block)

    async def _send_block(self, block: bytes) -> CallOutcome:
        s = self.s
        attempts, sent, first_at, last = 0, False, None, "no_answer"
        while attempts <= s.retries:
            attempts += 1
            self._drain_stale()
            self._write(select_sequence(s.own_address, s.peer_address))
            reply = await self._expect()
            if not (isinstance(reply, Control) and reply.char == ACK):
                last = "busy" if isinstance(reply, Control) and reply.char == NAK else "no_answer"
                self._count(f"paging.line.select_{last}")
                self._write(bytes([EOT]))
                if last == "busy":
                    await asyncio.sleep(s.busy_backoff_s)
                continue
            if first_at is None:
                first_at = time.monotonic()
            self._write(block)
            sent = True
            reply = await self._expect()
            if isinstance(reply, Control) and reply.char == ACK:
                self._write(bytes([EOT]))
                return CallOutcome(True, "acknowledged", attempts, True, first_at)
            last = "nak" if isinstance(reply, Control) and reply.char == NAK else "no_answer"
            self._count(f"paging.line.block_{last}")
            self._write(bytes([EOT]))
        return CallOutcome(False, last, attempts, sent, first_at)

    # -- polling: status from the paging system ------------------------------------------
    async def poll(self) -> PollOutcome:
        """Ask for status blocks; ACK good ones, NAK bad ones (bounded); EOT ends it."""
        async with self.lock:
            return await self._poll()

    async def _poll(self) -> PollOutcome:
        self._drain_stale()
        self._write(poll_sequence(self.s.peer_address))
        out = PollOutcome(False)
        naks = 0
        while True:
            item = await self._expect()
            if item is None:
                return out  # silence: not answered (or the status exchange stopped half-way)
            out.answered = True
            if isinstance(item, Control):
                if item.char == EOT:
                    return out
                continue  # a stray ACK/NAK/ENQ from the far end: keep listening until EOT or silence
            if isinstance(item, BadBlock):
                naks += 1
                if naks > self.s.retries:
                    self._write(bytes([EOT]))
                    return out
                self._write(bytes([NAK]))
                continue
            out.statuses.append(item)
            self._write(bytes([ACK]))


def line_time_s(nbytes: int, baudrate: int, bits_per_char: int = 10) -> float:
    """How long ``nbytes`` occupy the line: the yardstick of the press -> block benchmark."""
    return nbytes * bits_per_char / baudrate


__all__ = ["CallOutcome", "EspaLink", "LineSettings", "LinkError", "PollOutcome", "line_time_s"]
