"""What both area-monitor kinds share: dose-rate units, the per-area rule settings, config checks.

Thresholds are set per area (``[radiation.areas.<area>]``) or per device (``radiation = {...}``
on the device, which replaces the area's settings as a whole). A monitor with neither is a
configuration error: there is no safe default threshold for an unknown room, because an occupied
uptake room sits far above the controlled-area criterion of 7.5 uSv/h (domain.md section 5).

Every driver of an area monitor reports the same value keys (``VALUE_KEYS``), so one rule set
(``daemon/radiation/rules.py``) serves them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pydantic import Field, model_validator

from suitemon.drivers.base import ProfileError
from suitemon.drivers.config import Id, Strict

UNIT = "uSv/h"

# Display / register units -> factor to uSv/h. The roentgen factors are the usual
# 1 R ~ 10 mSv approximation for ambient gamma dose equivalent; see docs/radiation.md.
UNIT_FACTORS: dict[str, float] = {
    "nSv/h": 0.001,
    "uSv/h": 1.0,
    "mSv/h": 1000.0,
    "uR/h": 0.01,
    "mR/h": 10.0,
}
DOSE_UNIT_FACTORS: dict[str, float] = {"nSv": 0.001, "uSv": 1.0, "mSv": 1000.0, "uR": 0.01, "mR": 10.0}

# Near an FDG patient (AAPM TG-108): dose rate = GAMMA * A(t) / d**2, A decaying with F-18.
GAMMA_USV_M2_PER_MBQ_H = 0.092
F18_HALF_LIFE_S = 6586.2


def patient_dose_rate(
    activity_mbq: float, elapsed_s: float, distance_m: float, half_life_s: float = F18_HALF_LIFE_S
) -> float:
    """uSv/h at distance_m from a patient given activity_mbq, elapsed_s after that activity was measured."""
    activity = activity_mbq * math.pow(2.0, -max(0.0, elapsed_s) / half_life_s)
    return GAMMA_USV_M2_PER_MBQ_H * activity / distance_m**2


# The value keys every area-monitor driver puts in its Reading.
VALUE_KEYS = (
    "dose_rate_usv_h",
    "over_range",
    "detector_fault",
    "fault_reason",
    "instrument_high_alarm",
    "instrument_low_alarm",
)


def to_usv_h(value: float, unit: str) -> float:
    try:
        return value * UNIT_FACTORS[unit]
    except KeyError as err:
        raise ProfileError(f"unknown dose-rate unit {unit!r}; known: {', '.join(UNIT_FACTORS)}") from err


class ThresholdSet(Strict):
    """Warning and alarm levels for one situation of an area (vacant, or occupied by a patient)."""

    warning_usv_h: float = Field(gt=0)
    alarm_usv_h: float = Field(gt=0)
    hysteresis_usv_h: float | None = Field(
        None,
        ge=0,
        description="how far below a level the rate must fall to clear it; default 10 % of the level",
    )

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdSet:
        if self.warning_usv_h >= self.alarm_usv_h:
            raise ValueError("warning_usv_h must be below alarm_usv_h")
        if self.hysteresis_usv_h is not None and self.hysteresis_usv_h >= self.warning_usv_h:
            raise ValueError("hysteresis_usv_h must be smaller than warning_usv_h")
        return self

    def band(self, level: float) -> float:
        return self.hysteresis_usv_h if self.hysteresis_usv_h is not None else 0.1 * level


class RiseRule(Strict):
    """A step rise not explained by a patient arriving: a suspected spill."""

    # default= by name: type checkers read a positional default as none, and RiseRule() must type-check.
    enabled: bool = True
    rise_usv_h: float = Field(default=2.0, gt=0, description="minimum step above the recent baseline")
    factor: float = Field(
        default=2.0, ge=1, description="and the new level at least this many times the baseline"
    )
    window_s: float = Field(default=60.0, gt=0, description="readings this far back make the baseline")
    confirm_s: float = Field(
        default=4.0, ge=0, description="the step must hold this long (reading timestamps)"
    )
    min_baseline_readings: int = Field(default=3, ge=1, le=1000)
    occupancy_grace_s: float = Field(
        default=60.0, ge=0, description="a patient arriving this close to the step explains it"
    )
    patient_min_distance_m: float = Field(
        default=0.5,
        gt=0,
        description="closest a patient can be to the detector; bounds what a patient explains",
    )
    assumed_activity_mbq: float = Field(
        default=500.0,
        gt=0,
        le=20000,
        description="activity assumed for an occupant whose activity is not known (above the 400 MBq FDG DRL)",
    )


class AreaRadiation(Strict):
    """Rules for the monitors of one area."""

    normal: ThresholdSet
    occupied: ThresholdSet | None = Field(
        None, description="used while an injected patient occupies the area; absent: 'normal' always applies"
    )
    alarm_delay_s: float = Field(
        5.0, ge=0, le=600, description="a level must be exceeded this long (reading timestamps) to alarm"
    )
    zero_fault_s: float = Field(
        30.0, gt=0, le=86400, description="a reading of exactly zero this long is a detector-fault warning"
    )
    background_usv_h: float = Field(0.1, ge=0)
    range_max_usv_h: float | None = Field(
        None, gt=0, description="readings at or above this are over-range even without the device's flag"
    )
    rise: RiseRule = Field(
        default_factory=RiseRule, description="spill detection (rise.enabled = false: off)"
    )

    @model_validator(mode="after")
    def _range_above_alarm(self) -> AreaRadiation:
        if self.range_max_usv_h is not None and self.range_max_usv_h <= self.normal.alarm_usv_h:
            raise ValueError("range_max_usv_h must be above normal.alarm_usv_h")
        return self


class RadiationSection(Strict):
    """The ``[radiation]`` section: rules per area."""

    areas: dict[Id, AreaRadiation] = Field(default_factory=dict)


def rules_for(device_cfg: Any, root_cfg: Any) -> AreaRadiation | None:
    """The device's own rules, else its area's, else None (a config error, see check_devices)."""
    # Both configs are built at run time (the device union, the root model): their fields are typed here.
    own: AreaRadiation | None = getattr(device_cfg, "radiation", None)
    if own is not None:
        return own
    section: RadiationSection | None = getattr(root_cfg, "radiation", None)
    if section is not None and device_cfg.location is not None:
        return section.areas.get(device_cfg.location)
    return None


def check_devices(kind: str, cfg: Any) -> Iterable[tuple[str, str]]:
    for did, dev in cfg.devices.items():
        if dev.kind != kind:
            continue
        if dev.radiation is None and dev.location is None:
            yield (
                f"devices.{did}.location",
                "an area monitor needs an area (location) or its own 'radiation' thresholds",
            )
        elif rules_for(dev, cfg) is None:
            yield (
                f"devices.{did}.radiation",
                f"no thresholds: set [radiation.areas.{dev.location}] or 'radiation' on the device",
            )


def check_section(cfg: Any) -> Iterable[tuple[str, str]]:
    for area in cfg.radiation.areas:
        if area not in cfg.areas:
            yield (f"radiation.areas.{area}", f"unknown area '{area}'")
