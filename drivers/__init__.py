"""Device drivers. Each module is independent; the core loads them lazily through suitemon.daemon.kinds."""

from suitemon.drivers.base import (CommError, DeviceException, DeviceTimeout, Driver, DriverError, FrameError,
                   ProfileError, Reading)

__all__ = ["Driver", "Reading", "DriverError", "CommError", "DeviceTimeout", "FrameError",
           "DeviceException", "ProfileError"]
