"""Device drivers. Each module is independent; the core loads them lazily through daemon.kinds."""

from .base import (CommError, DeviceException, DeviceTimeout, Driver, DriverError, FrameError,
                   ProfileError, Reading)

__all__ = ["Driver", "Reading", "DriverError", "CommError", "DeviceTimeout", "FrameError",
           "DeviceException", "ProfileError"]
