"""Config sections for dose checks (``[dispensing]``) and uptake timers (``[uptake]``).

Both sections are optional: without them the defaults below apply (the domain notes'
figures), because a dispenser whose administrations went unchecked, or whose patients
left no room occupied, would be the unsafe default.
"""

from __future__ import annotations

import re
from typing import Iterable, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from suitemon.drivers.config import Id, Priority, Strict
from suitemon.drivers.halflife import HALF_LIFE_S

# ICRP 128: 0.019 mSv/MBq for FDG. Site entries are added to (or override) these.
DEFAULT_DOSE_COEFFICIENTS = {"FDG": 0.019}
# Alarm types whose cause is a past event (or, for a spill, outlives the unit's error bit): they must
# latch, so a site's [alarm_types] entry may not turn that off.
LATCHING_ALARM_TYPES = ("dose.tolerance", "dose.reference_level", "dose.notifiable", "dose.wrong_radiopharmaceutical",
                        "dose.residual", "dose.exam_unknown", "dose.record_invalid", "dispenser.records_lost",
                        "dispenser.spill")


class ReferenceLevel(Strict):
    """A local diagnostic reference level: a fixed activity, a per-kg rule, or both."""

    fixed_mbq: float | None = Field(None, gt=0)
    per_kg_mbq: float | None = Field(None, gt=0)
    mode: Literal["any", "all"] = Field(
        "any", description="any: exceeding either rule alarms; all: only exceeding every rule does")

    @model_validator(mode="after")
    def _one_rule(self) -> "ReferenceLevel":
        if self.fixed_mbq is None and self.per_kg_mbq is None:
            raise ValueError("give fixed_mbq, per_kg_mbq or both")
        return self


class Exam(Strict):
    """What a booked examination code expects to be given."""

    radionuclide: str
    radiopharmaceutical: str | None = None
    uptake_s: float | None = Field(None, gt=0, le=86400, description="this exam's uptake time")

    @field_validator("radionuclide")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in HALF_LIFE_S:
            raise ValueError(f"unknown radionuclide '{v}'; known: {', '.join(HALF_LIFE_S)}")
        return v


class DispensingConfig(Strict):
    tolerance_pct: float = Field(10.0, gt=0, le=100, description="administered vs prescribed, +- per cent")
    residual_limit_pct: float | None = Field(2.0, gt=0, le=100, description="residual as per cent of measured")
    residual_limit_mbq: float | None = Field(None, gt=0)
    notifiable_msv: float = Field(25.0, gt=0, description="effective dose that must be reported")
    dose_coefficients: dict[str, float] = Field(default_factory=dict, description="mSv/MBq by radiopharmaceutical")
    reference_levels: dict[str, ReferenceLevel] = Field(
        default_factory=lambda: {"FDG": ReferenceLevel(fixed_mbq=400.0, per_kg_mbq=3.5)})
    exams: dict[str, Exam] = Field(default_factory=dict, description="booked exam code -> what it expects")
    unknown_exam: Literal["alarm", "ignore"] = "alarm"
    summary_at: str = Field("20:00", description="local time (site timezone) of the daily summary")

    @field_validator("summary_at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("summary_at must be HH:MM (24 h)")
        return v

    @field_validator("dose_coefficients")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not 0 < x < 10:
                raise ValueError(f"{k}: {x} mSv/MBq is not a plausible dose coefficient")
        return v

    @property
    def coefficients(self) -> dict[str, float]:
        return {**DEFAULT_DOSE_COEFFICIENTS, **self.dose_coefficients}


class UptakeConfig(Strict):
    uptake_s: float = Field(3600.0, gt=0, le=86400, description="administration -> ready for scan")
    overdue_s: float = Field(5400.0, gt=0, le=172800, description="administration -> overdue alarm")
    overdue_priority: Priority = "medium"
    notify_role: Id | None = Field("scanner_team", description="told 'ready for scan'; must be a [roles] entry")
    state_period_s: float = Field(10.0, ge=0.5, le=600, description="how often each room's state is republished")
    study_complete_events: list[str] = Field(
        default_factory=lambda: ["dicom.study_complete", "study.complete"],
        description="journal event types that end a room's uptake (the patient has been scanned)")

    @model_validator(mode="after")
    def _order(self) -> "UptakeConfig":
        if self.overdue_s <= self.uptake_s:
            raise ValueError("overdue_s must be longer than uptake_s")
        return self


def check(cfg) -> Iterable[tuple[str, str]]:
    """Cross-references for the dispenser kind and its sections (run by the config loader)."""
    for did, dev in cfg.devices.items():
        if getattr(dev, "kind", None) != "dispenser":
            continue
        for number, area in dev.rooms.items():
            if area not in cfg.areas:
                yield f"devices.{did}.rooms.{number}", f"unknown area '{area}'"
    dispensers = any(getattr(d, "kind", None) == "dispenser" for d in cfg.devices.values())
    if dispensers or getattr(cfg, "dispensing", None) is not None:
        try:
            ZoneInfo(cfg.site.timezone)  # the daily summary's day and time are local
        except (ZoneInfoNotFoundError, ValueError):
            yield "site.timezone", f"unknown time zone '{cfg.site.timezone}'"
    up = getattr(cfg, "uptake", None)
    if up is not None and up.notify_role is not None and up.notify_role not in cfg.roles:
        yield "uptake.notify_role", f"unknown role '{up.notify_role}'"
    for t in LATCHING_ALARM_TYPES:
        at = cfg.alarm_types.get(t)
        if at is not None and not at.latching:
            yield f"alarm_types.{t}.latching", ("must be true: the cause is a past event (or a spill outliving the "
                                                "unit's error bit), so a non-latching alarm would clear before "
                                                "anyone saw it")


__all__ = ["DispensingConfig", "UptakeConfig", "ReferenceLevel", "Exam", "check", "DEFAULT_DOSE_COEFFICIENTS",
           "LATCHING_ALARM_TYPES"]
