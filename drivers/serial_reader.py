"""A serial port opened for an event-driven reader (the Ludlum driver, the ESPA 4.4.4 link).

Both read through the event loop's add_reader on the port's descriptor instead of a thread, so the
port is opened non-blocking and its input flushed: bytes queued while nobody listened are old and must
never be read as fresh.
"""

from __future__ import annotations

import os
import termios

import serial


class SerialOpenError(OSError):
    """The port could not be opened or configured; the message names it. Callers raise their own
    driver error from it."""


def open_for_reader(
    port: str,
    *,
    baudrate: int,
    bytesize: int,
    parity: str,
    stopbits: float,
    write_timeout: float | None = None,
) -> tuple[serial.Serial, int]:
    """The open port and its non-blocking descriptor, or SerialOpenError."""
    try:
        ser = serial.Serial(
            port,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
            timeout=0,
            write_timeout=write_timeout,
        )
        ser.reset_input_buffer()
    # termios.error: a device that is not a tty, or refuses the line settings
    except (serial.SerialException, OSError, ValueError, termios.error) as err:
        raise SerialOpenError(f"cannot open serial port {port}: {err}") from err
    fd = ser.fileno()
    os.set_blocking(fd, False)
    return ser, fd
