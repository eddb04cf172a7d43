"""The systemd notify protocol, without libsystemd: one datagram per message.

systemd passes ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for the Linux
abstract namespace) to a ``Type=notify`` service; the service sends newline
separated ``KEY=value`` assignments to it (``READY=1``, ``STATUS=...``,
``WATCHDOG=1``, ``RELOADING=1``, ``STOPPING=1``). ``WATCHDOG_USEC`` (and, when set,
``WATCHDOG_PID``, which must be our pid) says the watchdog is armed and how long
systemd waits for a ping. Nothing here needs root.

Sending never raises and never blocks the event loop: a notification that cannot be
delivered is logged once and dropped, because the daemon's safety work must not
depend on systemd being there (it also runs in a terminal, in tests and in demos).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger("suitemon.sdnotify")

ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | bytes | None:
    """The sendto() address for a NOTIFY_SOCKET value, or None if we cannot use it.

    ``@name`` is the abstract namespace: a leading NUL byte on the wire.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None  # e.g. "vsock:..." (systemd >= 254 in VMs): not ours to support here


def watchdog_timeout(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds systemd waits for a WATCHDOG=1, or None when no watchdog is armed for us.

    Follows sd_watchdog_enabled(): WATCHDOG_USEC must be a positive integer, and when
    WATCHDOG_PID is set it must name this process (a child must not ping for us).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.error("WATCHDOG_USEC is not an integer; watchdog ignored", value=raw)
        return None
    if usec <= 0:
        return None
    wpid = environ.get("WATCHDOG_PID")
    if wpid:
        try:
            if int(wpid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            log.error("WATCHDOG_PID is not an integer; watchdog ignored", value=wpid)
            return None
    return usec / 1_000_000


@dataclass
class Notifier:
    """Sends notifications to systemd; a no-op when the service manager gave no socket."""

    address: str | bytes | None
    _sock: socket.socket | None = None
    _failed_once: bool = False
    sent: int = 0

    @classmethod
    def from_environment(cls) -> Notifier:
        """The notifier for the socket systemd gave us (disabled when there is none)."""
        value = os.environ.get("NOTIFY_SOCKET", "")
        address = socket_address(value) if value else None
        if value and address is None:
            log.error("NOTIFY_SOCKET has an address form suitemon does not support", value=value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; True if the socket took it."""
        if self.address is None:
            return False
        for a in assignments:
            if "=" not in a or "\n" in a:
                raise ValueError(f"not a single KEY=value assignment: {a!r}")
        payload = "\n".join(assignments).encode("utf-8", errors="replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self.address)
        except OSError as err:
            if not self._failed_once:
                log.error("cannot notify systemd", error=str(err), address=repr(self.address))
                self._failed_once = True
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *(() if status is None else (status_line(status),)))

    def status(self, text: str) -> bool:
        return self.notify(status_line(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 match the reload to our READY=1; older ones ignore it.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *(() if status is None else (status_line(status),)))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def status_line(text: str) -> str:
    """STATUS= takes one line; systemd shows it in `systemctl status`."""
    one = " ".join(text.split())
    return "STATUS=" + one[:400]


def unset_environment() -> None:
    """Forget the variables so processes we start never talk to systemd on our behalf."""
    for key in ENV_KEYS:
        os.environ.pop(key, None)


__all__ = ["Notifier", "socket_address", "status_line", "unset_environment", "watchdog_timeout"]
