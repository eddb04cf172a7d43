"""Simulated Ludlum 375: the physical model sending 14-byte ASCII frames down a pty.

Like the RTU server, it creates a pty pair and links the far end at the device's
``serial_port`` path, so the daemon opens a real serial line. One frame every
``frame_period_s``. Serial trouble on demand: ``garbage`` (random bytes now), ``partial``
(the first bytes of a frame now), ``noise`` (a fraction of frames corrupted, evenly spread),
``silence`` (the instrument stops sending), ``unplug``/``plug`` (the line goes away).
Sim option ``display_unit``: the unit the simulated meter is set to (default: the config's
``reading_unit``). Status bytes follow the manual: '1' = the status light is on.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import structlog

from suitemon.drivers.ludlum_frames import format_frame, format_reading
from suitemon.drivers.radiation import UNIT_FACTORS
from suitemon.simulators.base import Simulator
from suitemon.simulators.pty_link import open_pty_link
from suitemon.simulators.radiation_model import AreaModel

log = structlog.get_logger("suitemon.sim.ludlum375")

# Bytes that can never appear in a valid frame: corruption with these is always detectable.
_INVALID = bytes(b for b in range(256) if b not in b"0123456789.ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n")


class Ludlum375Simulator(Simulator):
    def __init__(self, device_id: str, cfg: Any):
        super().__init__(device_id, cfg)
        self.path = Path(cfg.serial_port)
        self.period = cfg.frame_period_s
        # The meter's display unit is a setting on the instrument, not something the frame says: the
        # `display_unit` sim option sets it (default: what the config claims), so a mismatch can be shown.
        self.display_unit = self.options.get("display_unit") or cfg.reading_unit or "uSv/h"
        if self.display_unit not in UNIT_FACTORS:
            raise ValueError(
                f"{device_id}: sim display_unit {self.display_unit!r} is not one of {', '.join(UNIT_FACTORS)}"
            )
        self.factor = UNIT_FACTORS[self.display_unit]
        self.model = AreaModel(self.options)
        self.rng = random.Random(self.options.get("seed"))
        self.noise_rate = 0.0
        self._noise_acc = 0.0
        self.silent = False
        self.error_code = "0"
        self.frames_sent = 0
        self.corrupted = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._task: asyncio.Task | None = None
        self.actions.update(self.model.actions())
        self.actions.update(
            {
                "garbage": self.garbage,
                "partial": self.partial,
                "noise": self.set_noise,
                "silence": self.set_silence,
                "error_code": self.set_error_code,
                "unplug": self.unplug,
                "plug": self.plug,
                "stats": self.stats,
            }
        )

    # -- line ---------------------------------------------------------------
    def _open_pty(self) -> None:
        self._master, self._slave = open_pty_link(self.path)

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        try:
            if self.path.is_symlink():
                self.path.unlink()
        except OSError:
            pass

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        try:
            os.write(self._master, data)
        except OSError:
            pass  # nobody reading and the buffer is full: bytes on a real line are lost the same way

    async def start(self) -> None:
        self._open_pty()
        self._task = asyncio.create_task(self._run(), name=f"ludlum-sim:{self.device_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._close_pty()

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            if not self.silent and self._master is not None:
                self._send(self.frame())
            next_at += self.period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # -- frames -------------------------------------------------------------
    def frame(self) -> bytes:
        s = self.model.sample()
        shown = s.rate_usv_h / self.factor
        over = s.over_range
        try:
            text = format_reading(shown)
        except ValueError:
            text, over = "9999.0", True  # the display saturates
        return format_frame(
            text,
            audio=s.high_alarm or s.low_alarm,
            high_alarm=s.high_alarm,
            low_alarm=s.low_alarm,
            over_range=over,
            monitor_fail=s.fault,
            error_code=self.error_code if not s.fault else "3",
        )

    def _send(self, frame: bytes) -> None:
        self.frames_sent += 1
        # Corrupt a `noise_rate` fraction of frames, evenly spread (0.5 = every other frame):
        # random runs of bad frames would make comm loss a matter of luck in tests.
        self._noise_acc += self.noise_rate
        if self._noise_acc >= 1.0:
            self._noise_acc -= 1.0
            self.corrupted += 1
            how = self.rng.choice(("prefix", "truncate", "byte"))
            if how == "prefix":
                frame = bytes(self.rng.choice(_INVALID) for _ in range(self.rng.randint(1, 20))) + frame
            elif how == "truncate":
                frame = frame[: self.rng.randint(1, 12)]
            else:
                i = self.rng.randrange(12)
                frame = frame[:i] + bytes([self.rng.choice(_INVALID)]) + frame[i + 1 :]
        self._write(frame)

    # -- actions ------------------------------------------------------------
    def garbage(self, count: int = 20) -> str:
        self._write(bytes(self.rng.getrandbits(8) for _ in range(int(count))))
        return f"{count} bytes of garbage"

    def partial(self, count: int = 7) -> str:
        self._write(self.frame()[: max(1, min(13, int(count)))])
        return f"{count} bytes of a frame"

    def set_noise(self, rate: float = 0.3) -> float:
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        self.noise_rate = float(rate)
        return self.noise_rate

    def set_silence(self, on: bool = True) -> bool:
        self.silent = bool(on)
        return self.silent

    def set_error_code(self, code: str = "0") -> str:
        if len(code) != 1 or not (code.isdigit() or "A" <= code <= "Z"):
            raise ValueError("error code is one digit or capital letter")
        self.error_code = code
        return code

    async def unplug(self) -> str:
        self._close_pty()
        return "unplugged"

    async def plug(self) -> str:
        if self._master is None:
            self._open_pty()
        return "plugged"

    def stats(self) -> dict[str, Any]:
        return {
            "frames_sent": self.frames_sent,
            "corrupted": self.corrupted,
            "silent": self.silent,
            "noise_rate": self.noise_rate,
            "model": self.model.describe(),
        }
