"""A stand-in for systemd's end of the notify protocol: a real AF_UNIX datagram socket."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import wait_until


class NotifySocket:
    """Receives what the daemon sends to NOTIFY_SOCKET; tests wait on conditions over it.

    ``abstract=True`` binds in the Linux abstract namespace and gives ``@name`` as the
    environment value, as systemd may.
    """

    def __init__(self, tmp: Path, *, abstract: bool = False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"suitemon-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = tmp / "notify.sock"
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.sock.settimeout(0.2)
        self.datagrams: list[tuple[float, dict[str, str]]] = []
        self.cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def env(self, watchdog_s: float | None = None, **extra: str) -> dict[str, str]:
        e = {"NOTIFY_SOCKET": self.env_value}
        if watchdog_s is not None:
            e["WATCHDOG_USEC"] = str(int(watchdog_s * 1_000_000))
        e.update(extra)
        return e

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self.cond:
                self.datagrams.append((time.monotonic(), fields))
                self.cond.notify_all()

    def wait_for(self, pred: Callable[[NotifySocket], Any], timeout: float, what: str) -> Any:
        return wait_until(
            lambda: pred(self), timeout, what=what, cond=self.cond, last=lambda: self.datagrams[-5:]
        )

    def times(self, key: str, value: str | None = None, since: float = 0.0) -> list[float]:
        return [
            t for t, f in self.datagrams if key in f and (value is None or f[key] == value) and t >= since
        ]

    def statuses(self, since: float = 0.0) -> list[str]:
        return [f["STATUS"] for t, f in self.datagrams if "STATUS" in f and t >= since]

    def first(self, key: str, value: str | None = None) -> dict[str, str] | None:
        for _, f in self.datagrams:
            if key in f and (value is None or f[key] == value):
                return f
        return None

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        name = self.sock.getsockname()
        self.sock.close()
        if isinstance(name, str) and name and not name.startswith("\0"):
            try:
                os.unlink(name)
            except OSError:
                pass


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]
