"""The one small interface every driver implements, and the errors it may raise.

A driver talks to one device. ``poll()`` returns a complete :class:`Reading` or raises:
there is no partial reading, so a failed poll can never leave half-fresh data behind
(the NUT rule). The core's device runner turns failures into staleness and a
communication-lost alarm; drivers only report what happened on the wire.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Mapping


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
    """Open, poll, close. ``close()`` is safe to call twice; drivers are async context managers."""

    def __init__(self, device_id: str, config: Any):
        self.device_id = device_id
        self.config = config
        self.is_open = False
        self.counters: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def poll(self) -> Reading: ...

    def poll_interval(self) -> float:
        """Seconds until the next poll. A driver may poll faster in some states (a UPS on battery)."""
        return self.config.poll_s

    async def close(self) -> None:
        self.is_open = False

    def set_outputs(self, desired: Mapping[str, Any]) -> None:
        """Outputs the device should show (lamps): written on the next poll, read back after.

        Only drivers of devices with outputs implement it; the rules say what, the driver says how.
        """
        raise DriverError(f"{type(self).__name__} has no outputs to set")

    async def command(self, name: str, **args: Any) -> Any:
        """Device-specific actions (write a coil, send an outlet command)."""
        raise DriverError(f"{type(self).__name__} has no command '{name}'")

    async def __aenter__(self):
        await self.open()
        return self

    async def __aexit__(self, *exc):
        await self.close()
