"""Device drivers. Each module is independent; the core loads them lazily through suitemon.daemon.kinds."""

from suitemon.drivers.base import (
    CommError,
    DeviceException,
    DeviceTimeout,
    Driver,
    DriverError,
    FrameError,
    ProfileError,
    Reading,
)

__all__ = [
    "CommError",
    "DeviceException",
    "DeviceTimeout",
    "Driver",
    "DriverError",
    "FrameError",
    "ProfileError",
    "Reading",
]
