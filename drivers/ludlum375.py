"""Ludlum Model 375-style area monitor: an ASCII stream on RS-232, one frame every 2 s.

The monitor talks without being asked, so the driver listens: the port is opened with
pyserial (which sets baud rate and framing), made non-blocking, and watched by the event
loop (``loop.add_reader``): no thread, no blocking read. Bytes go through the pure
:class:`suitemon.drivers.ludlum_frames.FrameReader`, which rejects and counts anything that fails
its checks. ``poll()`` returns the newest valid frame not returned before, waiting for
one if needed; when no valid frame has come for ``comm_lost_frames`` frame periods it
raises, and with ``comm_loss_after = 1`` (this kind's default) that one failure is the
comm-lost alarm: "a monitor that stops sending for 3 frame periods is comm-lost".
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Literal, get_args

import serial
import structlog
from pydantic import Field, model_validator

from suitemon.drivers.base import CommError, DeviceTimeout, Driver, FrameError, Reading
from suitemon.drivers.config import DeviceConfig
from suitemon.drivers.ludlum_frames import Frame, FrameReader
from suitemon.drivers.radiation import AreaRadiation, check_devices, to_usv_h
from suitemon.drivers.serial_reader import SerialOpenError, open_for_reader

log = structlog.get_logger("suitemon.drivers.ludlum375")

DisplayUnit = Literal["nSv/h", "uSv/h", "mSv/h", "uR/h", "mR/h"]


class Config(DeviceConfig):
    kind: Literal["ludlum375"]
    serial_port: str
    baudrate: int = Field(9600, ge=300, le=115200)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    frame_period_s: float = Field(2.0, ge=0.05, le=60, description="the instrument sends a frame this often")
    comm_lost_frames: int = Field(
        3, ge=1, le=100, description="frame periods without a valid frame = comm lost"
    )
    # No default: the frame carries no unit, and a meter set to mR/h read as uSv/h reads 10x low.
    reading_unit: DisplayUnit | None = Field(
        None, description="REQUIRED: the unit the instrument is set to display"
    )
    comm_loss_after: int = Field(
        1,
        ge=1,
        le=100,
        description="failed polls; one failed poll already means comm_lost_frames silent periods",
    )
    radiation: AreaRadiation | None = None

    @model_validator(mode="before")
    @classmethod
    def _poll_at_frame_rate(cls, data: Any) -> Any:
        # Unless told otherwise, look for a frame as often as the instrument sends one.
        if isinstance(data, dict) and "poll_s" not in data:
            data = {**data, "poll_s": data.get("frame_period_s", 2.0)}
        return data


UNIT_REQUIRED = (
    "required: the unit the instrument is set to display (one of "
    + ", ".join(get_args(DisplayUnit))
    + "). The frame carries no unit; a meter set to mR/h read as uSv/h would read 10x low"
)


def check(cfg: Any) -> list[tuple[str, str]]:  # the root config model is built at run time
    issues = list(check_devices("ludlum375", cfg))
    for did, dev in cfg.devices.items():
        if dev.kind == "ludlum375" and dev.reading_unit is None:
            issues.append((f"devices.{did}.reading_unit", UNIT_REQUIRED))
    return issues


class Ludlum375Driver(Driver):
    config: Config

    def __init__(self, device_id: str, config: Config):
        if config.reading_unit is None:  # check-config refuses this; a direct caller gets the same reason
            raise ValueError(f"{device_id}: reading_unit {UNIT_REQUIRED}")
        super().__init__(device_id, config)
        self.unit: DisplayUnit = config.reading_unit
        self.period = config.frame_period_s
        self.reader = FrameReader(gap_s=max(0.02, self.period / 2))
        self._ser: serial.Serial | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._newest: Frame | None = None
        self._returned: Frame | None = None
        self._last_valid: float | None = None  # monotonic arrival of the newest valid frame
        self._opened_at = time.monotonic()
        self._link_error: str | None = None
        self._bad_at_last_valid = 0
        self._bad_logged = 0

    @property
    def poll_deadline(self) -> float:
        """The runner's hard bound on one poll: longer than the driver's own silence bound."""
        return (self.config.comm_lost_frames + 1) * self.period + 1.0

    async def _open(self) -> None:
        c = self.config
        try:
            self._ser, self._fd = open_for_reader(
                c.serial_port, baudrate=c.baudrate, bytesize=c.bytesize, parity=c.parity, stopbits=c.stopbits
            )
        except SerialOpenError as err:
            raise CommError(str(err)) from err
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)
        self._wake = asyncio.Event()
        self._opened_at = time.monotonic()
        self._link_error = None
        self.reader.reset()  # a half frame from before the reopen must not join the next one

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:  # closed since the event loop saw the port readable
            return
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:  # EIO: the other end of the line went away
            self._lost(f"serial read failed: {err.strerror or err}")
            return
        if not data:
            self._lost("serial line closed")
            return
        frames = self.reader.feed(data, time.monotonic())
        if self.reader.bad_frames != self._bad_logged:
            self._log_bad()
        if frames:
            self._newest = frames[-1]
            self._last_valid = frames[-1].at
            self._bad_at_last_valid = self.reader.bad_frames
            self.count("frames", len(frames))
            self._wake.set()

    def _log_bad(self) -> None:
        new = self.reader.bad_frames - self._bad_logged
        self.count("bad_frames", new)
        level = log.warning if self._bad_logged == self._bad_at_last_valid else log.debug
        level(
            "bad frame on the serial line",
            device=self.device_id,
            new=new,
            total=self.reader.bad_frames,
            last=self.reader.last_reject,
        )
        self._bad_logged = self.reader.bad_frames

    def _lost(self, why: str) -> None:
        self._link_error = why
        self._detach()
        self._wake.set()

    def _detach(self) -> None:
        if self._fd is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._fd = None

    async def poll(self) -> Reading:
        n = self.config.comm_lost_frames
        while True:
            if self._link_error is not None:
                raise CommError(f"{self.config.serial_port}: {self._link_error}")
            frame = self._newest
            if frame is not None and frame is not self._returned:
                self._returned = frame
                return self._reading(frame)
            now = time.monotonic()
            base = self._last_valid if self._last_valid is not None else self._opened_at
            deadline = base + n * self.period
            if deadline <= now:  # already silent too long: look for a frame again, then fail again
                deadline = now + 1.5 * self.period  # a frame period plus room for jitter
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), deadline - now)
            except TimeoutError as err:
                raise self._silence_error(time.monotonic() - base) from err

    def _silence_error(self, silent_s: float) -> CommError:
        bad = self.reader.bad_frames - self._bad_at_last_valid
        if bad:
            return FrameError(
                f"no valid frame for {silent_s:.1f} s: {bad} bad frame(s), last {self.reader.last_reject}"
            )
        return DeviceTimeout(f"no frame for {silent_s:.1f} s ({silent_s / self.period:.1f} frame periods)")

    def _reading(self, f: Frame) -> Reading:
        unit = self.unit
        reasons = [
            r
            for r, on in (
                ("monitor FAIL status", f.monitor_fail),
                (f"error code {f.error_code}", f.error_code != "0"),
            )
            if on
        ]
        values = {
            "dose_rate_usv_h": round(to_usv_h(f.reading, unit), 6),
            "over_range": f.over_range,
            "detector_fault": f.faulted,
            "fault_reason": "; ".join(reasons) or None,
            "instrument_high_alarm": f.high_alarm,
            "instrument_low_alarm": f.low_alarm,
            "audio": f.audio,
            "display": f.raw[:6].decode("ascii"),
            "display_unit": unit,
            "frames": self.reader.frames,
            "bad_frames": self.reader.bad_frames,
        }
        wall = time.time() - (time.monotonic() - f.at)
        return Reading(self.device_id, values, at=wall, mono=f.at)

    async def _close(self) -> None:
        self._detach()
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except (OSError, serial.SerialException):
                pass
