"""Digital I/O module profiles: what a generic Modbus DI/DO box can do, as data.

A module profile (TOML in ``drivers/profiles/``) gives the number of discrete inputs
and coils, their base addresses and whether inputs latch a rising edge until read.
Which input is which room's button is the *site's* wiring and lives in the device
config; what the box can do lives here, so the same profile serves every site.
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field, ValidationError

from suitemon.drivers.base import ProfileError
from suitemon.drivers.config import Strict
from suitemon.drivers.profile import profile_data, validation_issues


class IoProfile(Strict):
    name: str
    description: str = ""
    inputs: int = Field(ge=1, le=2000, description="discrete inputs (FC 02)")
    coils: int = Field(0, ge=0, le=1968, description="coils (FC 01 / 05 / 15)")
    input_base: int = Field(0, ge=0, le=65535)
    coil_base: int = Field(0, ge=0, le=65535)
    latch: Literal["none", "until_read"] = Field(
        "none", description="until_read: a rising edge reads as 1 at least once, however short"
    )

    @property
    def latching(self) -> bool:
        return self.latch == "until_read"


@functools.lru_cache(maxsize=32)
def load_io_profile(ref: str) -> IoProfile:
    """A shipped module profile by name (``dio16_latch``) or a TOML file by path (read once);
    ``extends = "dio16"`` takes a base module's keys and changes only what differs."""
    data = profile_data(ref, "I/O module profile")
    try:
        return IoProfile.model_validate(data)
    except ValidationError as err:
        raise ProfileError(f"I/O module profile {ref}: " + "; ".join(validation_issues(err))) from err
