"""Ludlum Model 375 RS-232 frames: a pure parser, a streaming reader that resynchronises, a formatter.

The instrument sends one 14-byte ASCII frame every 2 s (Ludlum 375 manual, section 4):

    bytes 1-6   the reading: ``0xxx.x`` below 1000, ``xxxx.0`` above (decimal point always byte 5)
    byte 7      audio status       '1' = on
    byte 8      high-alarm status  '1' = on
    byte 9      low-alarm status   '1' = on
    byte 10     over-range status  '1' = on
    byte 11     monitor status     '1' = on (the instrument's FAIL indication)
    byte 12     error code         '0' = no error
    bytes 13-14 CR LF

There is no checksum, so a frame is accepted only when every byte has its expected shape
*and* it is delimited: it starts right after the previous CR LF, at the start of the
stream, or after the line went quiet. Anything else (garbage, a frame cut short, two
frames run together) is rejected and counted; the reader is back in step at the next CR LF.
Nothing here does I/O or reads a clock: time comes in with the bytes, so it is table-tested
and fuzzed (tests/test_ludlum_frames.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

FRAME_LEN = 14
BODY_LEN = 12
TERMINATOR = b"\r\n"
READING_CHARS = frozenset(b"0123456789.")
FLAG_CHARS = frozenset(b"01")
ERROR_CHARS = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
NO_ERROR = "0"


class FrameRejected(ValueError):
    """A frame failed its checks; the message says which."""


@dataclass(frozen=True)
class Frame:
    raw: bytes
    reading: float  # in the instrument's display unit
    audio: bool
    high_alarm: bool
    low_alarm: bool
    over_range: bool
    monitor_fail: bool
    error_code: str
    at: float = 0.0  # when its last byte arrived (the caller's clock)

    @property
    def faulted(self) -> bool:
        return self.monitor_fail or self.error_code != NO_ERROR


def parse_frame(raw: bytes, at: float = 0.0) -> Frame:
    """One complete frame (14 bytes, CR LF included) -> Frame, or FrameRejected."""
    if len(raw) != FRAME_LEN:
        raise FrameRejected(f"length {len(raw)}, expected {FRAME_LEN}")
    if raw[12:] != TERMINATOR:
        raise FrameRejected("not terminated by CR LF")
    text = raw[:6]
    if not set(text) <= READING_CHARS:
        raise FrameRejected(f"reading {text!r} has characters other than digits and '.'")
    if text.count(b".") != 1:
        raise FrameRejected(f"reading {text!r} must have exactly one decimal point")
    if text.index(b".") != 4:
        # The manual puts the point at byte 5 in both formats. No checksum guards the frame, so a
        # point anywhere else is a corrupted frame (one byte would make 642.1 read 64.21), never a value.
        raise FrameRejected(f"reading {text!r} must have its decimal point at byte 5")
    for i, name in ((6, "audio"), (7, "high alarm"), (8, "low alarm"), (9, "over range"), (10, "monitor")):
        if raw[i] not in FLAG_CHARS:
            raise FrameRejected(f"{name} status byte {raw[i]:#04x} is not '0' or '1'")
    if raw[11] not in ERROR_CHARS:
        raise FrameRejected(f"error code byte {raw[11]:#04x} is not a digit or capital letter")
    return Frame(
        raw=bytes(raw),
        reading=float(text.decode("ascii")),
        audio=raw[6] == 0x31,
        high_alarm=raw[7] == 0x31,
        low_alarm=raw[8] == 0x31,
        over_range=raw[9] == 0x31,
        monitor_fail=raw[10] == 0x31,
        error_code=chr(raw[11]),
        at=at,
    )


def format_reading(value: float) -> str:
    """A non-negative value as the manual's 6 characters (``0642.1``, ``1234.0``), or ValueError."""
    if not value >= 0:  # also catches NaN
        raise ValueError(f"reading {value!r} cannot be displayed")
    text = f"{value:06.1f}" if value < 999.95 else f"{value:04.0f}.0"
    if len(text) != 6:
        raise ValueError(f"reading {value!r} does not fit the 6-character display")
    return text


def format_frame(
    value: float | str,
    *,
    audio: bool = False,
    high_alarm: bool = False,
    low_alarm: bool = False,
    over_range: bool = False,
    monitor_fail: bool = False,
    error_code: str = NO_ERROR,
) -> bytes:
    text = value if isinstance(value, str) else format_reading(value)
    flags = "".join("1" if f else "0" for f in (audio, high_alarm, low_alarm, over_range, monitor_fail))
    return f"{text}{flags}{error_code}".encode("ascii") + TERMINATOR


class FrameReader:
    """Bytes in (with their arrival time), checked frames out.

    ``gap_s``: a quiet line for longer than this ends whatever was buffered (a frame cut
    short), so the next frame is read even without a CR LF before it. Use about half the
    frame period; None turns it off.
    """

    def __init__(self, gap_s: float | None = None):
        self.gap_s = gap_s
        self._buf = bytearray()
        self._skipping = False  # inside an over-long segment already counted as bad
        self._last_at: float | None = None
        self.frames = 0
        self.bad_frames = 0
        self.discarded_bytes = 0
        self.reasons: Counter[str] = Counter()
        self.last_reject: str | None = None

    def _reject(self, segment: bytes | bytearray, reason: str) -> None:
        self.bad_frames += 1
        self.discarded_bytes += len(segment)
        key = reason.split(" ", 1)[0] if reason.startswith(("length", "reading")) else reason
        self.reasons[key] += 1
        self.last_reject = f"{reason}: {bytes(segment[:32])!r}"

    def reset(self) -> None:
        """Forget buffered bytes (the port was reopened); counters are kept."""
        self.discarded_bytes += len(self._buf)
        self._buf.clear()
        self._skipping = False
        self._last_at = None

    def feed(self, data: bytes, at: float) -> list[Frame]:
        if self.gap_s is not None and self._last_at is not None and at - self._last_at > self.gap_s:
            if self._buf and not self._skipping:
                self._reject(self._buf, "partial frame (line went quiet)")
            elif self._buf:
                self.discarded_bytes += len(self._buf)
            self._buf.clear()
            self._skipping = False
        self._last_at = at
        self._buf += data
        out: list[Frame] = []
        while True:
            end = self._buf.find(TERMINATOR)
            if end < 0:
                # No terminator yet. A body longer than 12 bytes can never become a frame
                # (a trailing CR may still be half of the terminator): drop it now, count it once.
                keep = 1 if self._buf.endswith(b"\r") else 0
                if len(self._buf) - keep > BODY_LEN:
                    if not self._skipping:
                        self._reject(
                            self._buf[: len(self._buf) - keep], "garbage (no CR LF where a frame must end)"
                        )
                    else:
                        self.discarded_bytes += len(self._buf) - keep
                    self._skipping = True
                    del self._buf[: len(self._buf) - keep]
                return out
            segment = bytes(self._buf[: end + 2])
            del self._buf[: end + 2]
            if self._skipping:
                self._skipping = False
                self.discarded_bytes += len(segment)
                continue
            try:
                frame = parse_frame(segment, at)
            except FrameRejected as err:
                self._reject(segment, str(err))
                continue
            self.frames += 1
            out.append(frame)
