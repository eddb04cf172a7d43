"""Configuration models shared by every driver.

Each driver module defines its own ``Config`` subclass of :class:`DeviceConfig`
(the mqtt-io idea: a module carries its own schema), and the core builds the
device union from the table in ``suitemon.daemon.kinds``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Priority = Literal["high", "medium", "low"]
AlarmKind = Literal["clinical", "technical", "maintenance"]


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a safety config must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(Strict):
    kind: str
    name: str | None = None
    location: Id | None = Field(None, description="area id the device serves")
    enabled: bool = True
    poll_s: float = Field(1.0, ge=0.02, le=3600)
    timeout_s: float = Field(0.5, gt=0, le=60)
    stale_after_s: float | None = Field(
        None, gt=0, description="age past which a value is stale; default 3 poll periods"
    )
    comm_loss_after: int = Field(3, ge=1, le=100, description="consecutive failed polls")
    comm_loss_priority: Priority = "high"
    sim: dict[str, Any] = Field(
        default_factory=dict, description="options for this device's simulator; ignored by the daemon"
    )

    @property
    def stale_after(self) -> float:
        return self.stale_after_s if self.stale_after_s is not None else 3 * self.poll_s + self.timeout_s


class ModbusDeviceConfig(DeviceConfig):
    """A device reached over Modbus RTU (serial) or Modbus TCP."""

    transport: Literal["tcp", "rtu"]
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    serial_port: str | None = None
    baudrate: int = Field(9600, ge=1200, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit: int = Field(1, ge=0, le=247)
    frame_gap_s: float | None = Field(
        None, ge=0, le=1, description="silence between RTU frames; default 3.5 characters"
    )
    profile: str | None = Field(None, description="register profile name or path")

    @model_validator(mode="after")
    def _rtu_needs_port(self) -> ModbusDeviceConfig:
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("serial_port is required when transport = 'rtu'")
        return self

    @property
    def char_time(self) -> float:
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate

    @property
    def frame_gap(self) -> float:
        if self.transport == "tcp":
            return 0.0
        if self.frame_gap_s is not None:
            return self.frame_gap_s
        # Modbus over serial line spec: 1.75 ms fixed above 19200 baud.
        return 3.5 * self.char_time if self.baudrate <= 19200 else 0.00175

    @property
    def bus_key(self) -> str:
        """Devices that share a physical bus share one lock."""
        if self.transport == "rtu":
            return f"rtu:{self.serial_port}"
        return f"tcp:{self.host}:{self.port}"
