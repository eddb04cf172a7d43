"""The ``[paging]`` section: the serial line to the paging system and who gets which call address.

Values that differ between installations (framing, message width, priority and beep digits,
whether the paging system returns call status and which status means "delivered") are here,
not in code. Defaults and their sources: docs/paging.md, docs/decisions.md ("ESPA 4.4.4").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time as dtime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from suitemon.drivers.config import Id, Priority, Strict

Digit = Annotated[str, StringConstraints(pattern=r"^[0-9]$")]
CallAddress = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,16}$")]
Address = Annotated[str, StringConstraints(pattern=r"^[0-9]$")]
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class NightHours(Strict):
    start: ClockTime = "22:00"
    end: ClockTime = "07:00"

    def contains(self, t: dtime) -> bool:
        s, e = dtime.fromisoformat(self.start), dtime.fromisoformat(self.end)
        return (s <= t < e) if s < e else (t >= s or t < e)


class PagingConfig(Strict):
    serial_port: str = Field(description="the RS-232 port wired to the paging system / DECT gateway")
    baudrate: int = Field(9600, ge=300, le=115200)
    bytesize: Literal[7, 8] = 7
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    control_station_address: Address = "1"
    paging_system_address: Address = "2"
    response_timeout_s: float = Field(2.0, gt=0, le=30)
    retries: int = Field(3, ge=0, le=10, description="retransmissions after the first attempt")
    poll_interval_s: float = Field(2.0, gt=0, le=60, description="idle polls: status and link check")
    link_lost_after: int = Field(3, ge=1, le=100, description="unanswered polls in a row = link down")
    message_width: int = Field(40, ge=16, le=128, description="characters the handsets display")
    call_type: Digit = "3"
    transmissions: Digit = "3"
    priorities: dict[Priority, Digit] = Field(
        default_factory=lambda: {"high": "3", "medium": "2", "low": "1"}
    )
    beeps: dict[Priority, Digit] = Field(default_factory=lambda: {"high": "3", "medium": "2", "low": "1"})
    status_returned: bool = Field(False, description="the paging system reports call status (record 7)")
    accepted_call_status: list[Digit] = Field(default_factory=lambda: ["1"], min_length=1)
    status_timeout_s: float = Field(
        15.0, gt=0, le=600, description="no status within this time: the page is unconfirmed (failed)"
    )
    recipients: dict[Id, CallAddress] = Field(
        default_factory=dict, description="recipient id (as in [roles]) -> call address"
    )
    emergency_word: str = Field("DETERIORATING", min_length=1, max_length=20)
    night: NightHours | None = None
    page_low_technical_at_night: bool = False
    simulate: bool = Field(True, description="`suitemon sim` runs a simulated base station on serial_port")
    sim_not_delivered_status: Digit = "0"

    @model_validator(mode="after")
    def _addresses_differ(self) -> PagingConfig:
        if self.control_station_address == self.paging_system_address:
            raise ValueError("control_station_address and paging_system_address must differ")
        for p in ("high", "medium", "low"):
            if p not in self.priorities or p not in self.beeps:
                raise ValueError(f"priorities and beeps need a digit for '{p}'")
        return self


def check(cfg) -> Iterable[tuple[str, str]]:
    """Call addresses must belong to recipients some role names (a typo would page nobody)."""
    known = {r for role in cfg.roles.values() for r in role.recipients}
    for rid in cfg.paging.recipients:
        if rid not in known:
            yield (
                f"paging.recipients.{rid}",
                f"'{rid}' is no role's recipient; roles name: {', '.join(sorted(known))}",
            )
