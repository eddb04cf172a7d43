"""Config sections for dose checks (``[dispensing]``) and uptake timers (``[uptake]``).

Both sections are optional: without them the defaults below apply (the domain notes'
figures), because a dispenser whose administrations went unchecked, or whose patients
left no room occupied, would be the unsafe default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from suitemon.drivers.config import Id, Priority, Strict
from suitemon.drivers.halflife import HALF_LIFE_S

# ICRP 128: 0.019 mSv/MBq for FDG. Site entries are added to (or override) these.
DEFAULT_DOSE_COEFFICIENTS = {"FDG": 0.019}
# Alarm types whose cause is a past event (or, for a spill, outlives the unit's error bit): they must
# latch, so a site's [alarm_types] entry may not turn that off.
LATCHING_ALARM_TYPES = (
    "dose.tolerance",
    "dose.reference_level",
    "dose.notifiable",
    "dose.wrong_radiopharmaceutical",
    "dose.residual",
    "dose.exam_unknown",
    "dose.record_invalid",
    "dispenser.records_lost",
    "dispenser.spill",
)

REMOVED = {
    "notifiable_msv": (
        "removed: notifiable exposures follow the CQC IR(ME)R criteria relative to the intended "
        "dose (docs/dispenser.md), not a fixed effective dose"
    ),
    "reference_levels": (
        "removed: give each exam its own reference_level = {rule = \"fixed\", mbq = ...} or "
        "{rule = \"per_kg\", mbq_per_kg = ...} under [dispensing.exams.<code>]"
    ),
}


class ReferenceLevel(Strict):
    """A local diagnostic reference level for one exam: a fixed activity OR an activity per kg.

    Exactly one rule, named: a level that silently combined both (the old "any" mode meant
    min(400 MBq, 3.5 MBq/kg x weight)) alarmed on every patient over ~114 kg.
    """

    rule: Literal["fixed", "per_kg"]
    mbq: float | None = Field(None, gt=0, description="rule fixed: the level in MBq")
    mbq_per_kg: float | None = Field(None, gt=0, le=100, description="rule per_kg: MBq per kg of body weight")

    @model_validator(mode="after")
    def _one_rule(self) -> ReferenceLevel:
        if self.rule == "fixed" and (self.mbq is None or self.mbq_per_kg is not None):
            raise ValueError("rule 'fixed' takes mbq (and no mbq_per_kg)")
        if self.rule == "per_kg" and (self.mbq_per_kg is None or self.mbq is not None):
            raise ValueError("rule 'per_kg' takes mbq_per_kg (and no mbq)")
        return self

    def limit_mbq(self, weight_kg: float | None) -> float | None:
        """The level for this patient; None when a per-kg rule has no weight to apply to."""
        if self.rule == "fixed":
            return self.mbq
        return self.mbq_per_kg * weight_kg if weight_kg else None

    def describe(self) -> str:
        if self.rule == "fixed":
            return f"fixed {self.mbq:g} MBq"
        return f"per kg {self.mbq_per_kg:g} MBq/kg x weight (not evaluated without a weight)"


class Exam(Strict):
    """What a booked examination code expects to be given."""

    radionuclide: str
    radiopharmaceutical: str | None = None
    uptake_s: float | None = Field(None, gt=0, le=86400, description="this exam's uptake time")
    reference_level: ReferenceLevel | None = Field(
        None, description="local DRL for this exam; absent: the reference-level check is reported as not done"
    )

    @field_validator("radionuclide")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in HALF_LIFE_S:
            raise ValueError(f"unknown radionuclide '{v}'; known: {', '.join(HALF_LIFE_S)}")
        return v


class DispensingConfig(Strict):
    tolerance_pct: float = Field(10.0, gt=0, le=100, description="administered vs prescribed, +- per cent")
    residual_limit_pct: float | None = Field(
        2.0, gt=0, le=100, description="residual as per cent of measured"
    )
    residual_limit_mbq: float | None = Field(None, gt=0)
    dose_coefficients: dict[str, float] = Field(
        default_factory=dict, description="mSv/MBq by radiopharmaceutical"
    )
    # Removed settings: refused with a pointer to what replaced them, never silently ignored.
    notifiable_msv: None = Field(None, exclude=True)
    reference_levels: None = Field(None, exclude=True)
    exams: dict[str, Exam] = Field(default_factory=dict, description="booked exam code -> what it expects")
    unknown_exam: Literal["alarm", "ignore"] = "alarm"
    summary_at: str = Field("20:00", description="local time (site timezone) of the daily summary")

    @field_validator("notifiable_msv", "reference_levels", mode="before")
    @classmethod
    def _removed(cls, v: Any, info) -> None:
        if v is not None:
            raise ValueError(REMOVED[info.field_name])
        return None

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
    notify_role: Id | None = Field(
        "scanner_team", description="told 'ready for scan'; must be a [roles] entry"
    )
    state_period_s: float = Field(
        10.0, ge=0.5, le=600, description="how often each room's state is republished"
    )
    study_complete_events: list[str] = Field(
        default_factory=lambda: ["dicom.study_complete", "study.complete"],
        description="journal event types that end a room's uptake (the patient has been scanned)",
    )

    @model_validator(mode="after")
    def _order(self) -> UptakeConfig:
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
            yield (
                f"alarm_types.{t}.latching",
                (
                    "must be true: the cause is a past event (or a spill outliving the "
                    "unit's error bit), so a non-latching alarm would clear before "
                    "anyone saw it"
                ),
            )


__all__ = [
    "DEFAULT_DOSE_COEFFICIENTS",
    "LATCHING_ALARM_TYPES",
    "DispensingConfig",
    "Exam",
    "ReferenceLevel",
    "UptakeConfig",
    "check",
]
