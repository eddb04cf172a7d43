"""The one small interface every driver implements, and the errors it may raise.

A driver talks to one device. ``poll()`` returns a complete :class:`Reading` or raises:
there is no partial reading, so a failed poll can never leave half-fresh data behind
(the NUT rule). The core's device runner turns failures into staleness and a
communication-lost alarm; drivers only report what happened on the wire.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from suitemon.drivers.config import DeviceConfig


class DriverError(Exception):
    """Base of every error a driver raises."""


class CommError(DriverError, ConnectionError):
    """The device did not answer usefully: no link, no answer, a garbled answer."""


class DeviceTimeout(CommError, TimeoutError):
    """No answer within the response timeout."""


class FrameError(CommError):
    """An answer arrived but failed its checks (CRC, length, framing)."""


class DeviceException(DriverError):
    """The device answered with a protocol exception (e.g. Modbus illegal address)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class ProfileError(ValueError):
    """A register profile or device description is invalid."""


@dataclass(frozen=True)
class Reading:
    device_id: str
    values: Mapping[str, Any]
    at: float = field(default_factory=time.time)  # wall clock, for humans and MQTT
    mono: float = field(default_factory=time.monotonic)  # for ages and staleness
    meta: Mapping[str, Any] = field(default_factory=dict)


class Driver(abc.ABC):
    """Open, poll, close: the base keeps ``is_open``; subclasses fill in ``_open()``/``_close()``.

    ``open()`` opens once even when the poll loop and a command both find the link closed, and a
    failed ``_open()`` is undone with ``_close()`` so nothing half-open is left behind. ``open()``
    and ``close()`` never interleave (one lock), so a reset cannot close a link opened after it.
    ``close()`` is safe to call twice; drivers are async context managers.
    """

    # Subclasses narrow this to their own Config model (``config: Config`` in the class body).
    config: DeviceConfig

    def __init__(self, device_id: str, config: DeviceConfig):
        self.device_id = device_id
        self.config = config
        self.is_open = False
        self.counters: dict[str, int] = {}
        self._lifecycle_lock: asyncio.Lock | None = None  # made on first use, inside the running loop

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _lock(self) -> asyncio.Lock:
        if self._lifecycle_lock is None:
            self._lifecycle_lock = asyncio.Lock()
        return self._lifecycle_lock

    async def open(self) -> None:
        async with self._lock():
            if self.is_open:
                return
            try:
                await self._open()
            except BaseException:
                await self._close()
                raise
            self.is_open = True

    async def close(self) -> None:
        async with self._lock():
            self.is_open = False
            await self._close()

    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect and check the device; raise a DriverError when it cannot be used."""

    async def _close(self) -> None:  # noqa: B027 - optional hook: a driver that holds nothing skips it
        """Release what ``_open()`` took; called on a closed driver too (close twice is harmless)."""

    @abc.abstractmethod
    async def poll(self) -> Reading: ...

    def poll_interval(self) -> float:
        """Seconds until the next poll. A driver may poll faster in some states (a UPS on battery)."""
        return self.config.poll_s

    @property
    def poll_deadline(self) -> float:
        """The runner's hard bound on one open or poll, in seconds; drivers that read more override it."""
        return self.config.timeout_s * 4 + 0.5

    def set_outputs(self, desired: Mapping[str, Any]) -> None:
        """Outputs the device should show (lamps): written on the next poll, read back after.

        Only drivers of devices with outputs implement it; the rules say what, the driver says how.
        """
        raise DriverError(f"{type(self).__name__} has no outputs to set")

    async def command(self, name: str, **args: Any) -> Any:
        """Device-specific actions (write a coil, send an outlet command)."""
        raise DriverError(f"{type(self).__name__} has no command '{name}'")

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
