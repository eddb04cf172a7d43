"""The generic Modbus point reader: any device whose register map fits a profile.

Every poll reads all points of the profile and commits them as one reading. Optional
per-point limits in the device config turn values into alarm conditions (see
``daemon/rules/points.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from suitemon.drivers.base import Reading
from suitemon.drivers.config import ModbusDeviceConfig, Priority, Strict
from suitemon.drivers.modbus_link import ProfileDriver
from suitemon.drivers.profile import ProfileRef, load_profile


class Limit(Strict):
    high: float | None = None
    low: float | None = None
    priority: Priority = "medium"
    hysteresis: float = Field(0.0, ge=0)
    message: str | None = None


class Config(ModbusDeviceConfig):
    kind: Literal["modbus_points"]
    profile: ProfileRef = "generic_io"
    limits: dict[str, Limit] = Field(default_factory=dict)


class ModbusPointsDriver(ProfileDriver):
    config: Config

    def __init__(self, device_id: str, config: Config):
        super().__init__(device_id, config, load_profile(config.profile))

    async def poll(self) -> Reading:
        assert self.dev is not None, "open() first"
        values = await self.dev.read_points()
        return Reading(self.device_id, values)

    async def command(self, name: str, **args: Any) -> Any:
        assert self.dev is not None
        if name == "write":
            await self.dev.write_point(args["point"], args["value"])
            return {"written": args["point"]}
        return await super().command(name, **args)
