"""Administered-activity facts from a PET image header (every SUV the scanner computes uses them).

RadionuclideTotalDose is in Bq in the classic PET Image Storage class and in MBq in the
Enhanced PET classes (PS3.3 C.8.9.4 vs C.8.22.5): the unit follows the SOP class, and a
value written in the wrong unit shows up as a factor of 10^6. Such a value is flagged here
(``activity_flag``), not trusted silently, whether or not a dispensing record is there to
reconcile it with.

Every item of the Radiopharmaceutical Information Sequence is read (dual-tracer studies);
the first is the study's primary tracer unless the administration on record names another.
A header with only RadiopharmaceuticalStartTime (older consoles) gives a time of day: it is
dated provisionally by the series here and again from the injection side (dose report,
dispensing record) when the study is evaluated (``redate``), because long-lived tracers
(Zr-89, Cu-64) are scanned days after the injection.

A value that cannot be interpreted (malformed or non-finite) is left out and named in
``unreadable``; the header's other values are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo

from pydicom.dataset import Dataset

from suitemon.daemon.dicom import values as dv
from suitemon.daemon.dicom.codes import RADIONUCLIDES
from suitemon.daemon.dicom.dose_sr import Unreadable, code_of

PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
ENHANCED_PET = "1.2.840.10008.5.1.4.1.1.130"
LEGACY_ENHANCED_PET = "1.2.840.10008.5.1.4.1.1.128.1"

# SOP class -> (unit of RadionuclideTotalDose, factor to MBq)
TOTAL_DOSE_UNIT: dict[str, tuple[str, float]] = {
    PET_IMAGE: ("Bq", 1e-6),
    ENHANCED_PET: ("MBq", 1.0),
    LEGACY_ENHANCED_PET: ("MBq", 1.0),
}

# What one PET administration can be, in MBq: from a low-dose research or paediatric scan to a
# therapy-scale activity. Outside it, the value is almost surely in the wrong unit (x 10^6 apart).
PLAUSIBLE_MBQ = (1.0, 50_000.0)


@dataclass(frozen=True)
class Tracer:
    """One item of the Radiopharmaceutical Information Sequence."""

    activity_mbq: float | None
    start_at: datetime | None
    start_source: str | None  # "datetime" | "series_date" (provisional) | "injection_date" | None
    start_time_of_day: str | None  # the TM value when the header had no DateTime
    half_life_s: float | None
    radionuclide: str | None
    radiopharmaceutical: str | None
    activity_flag: str | None = None  # why the activity cannot be trusted as read, if it cannot


@dataclass(frozen=True)
class PetHeader:
    activity_mbq: float | None
    activity_unit: str  # the unit the header value was read in (by SOP class)
    start_at: datetime | None
    half_life_s: float | None
    radionuclide: str | None
    weight_kg: float | None
    tracers: tuple[Tracer, ...] = ()
    tz: tzinfo | None = None
    unreadable: tuple[str, ...] = ()

    def key(self) -> tuple:
        return (self.activity_mbq, self.start_at, self.half_life_s, self.weight_kg, len(self.tracers))

    @property
    def primary(self) -> Tracer | None:
        return self.tracers[0] if self.tracers else None

    @property
    def activity_flag(self) -> str | None:
        return self.primary.activity_flag if self.primary else None

    @property
    def start_source(self) -> str | None:
        return self.primary.start_source if self.primary else None

    def with_primary(self, tracer: Tracer) -> PetHeader:
        """This header with ``tracer`` as the one reconciled (first in ``tracers``)."""
        rest = tuple(t for t in self.tracers if t is not tracer)
        return replace(
            self,
            activity_mbq=tracer.activity_mbq,
            start_at=tracer.start_at,
            half_life_s=tracer.half_life_s,
            radionuclide=tracer.radionuclide,
            tracers=(tracer, *rest),
        )


def activity_flag(mbq: float | None, unit: str) -> str | None:
    if mbq is None:
        return None
    low, high = PLAUSIBLE_MBQ
    if mbq < low:
        hint = " (a value in MBq written into a Bq field?)" if unit == "Bq" else ""
        return f"RadionuclideTotalDose reads as {mbq:.6g} MBq, below {low:g} MBq{hint}"
    if mbq > high:
        hint = " (a value in Bq written into an MBq field?)" if unit == "MBq" else ""
        return f"RadionuclideTotalDose reads as {mbq:.6g} MBq, above {high:g} MBq{hint}"
    return None


def _start(rp: Dataset, ds: Dataset, tz: tzinfo) -> tuple[datetime | None, str | None, str | None]:
    start = dv.dt_value(rp, "RadiopharmaceuticalStartDateTime", default_tz=tz)
    if start is not None:
        return start, "datetime", None
    tm = dv.text(rp, "RadiopharmaceuticalStartTime")
    if tm is None:
        return None, None, None
    tm = dv.check_time(tm, "RadiopharmaceuticalStartTime (0018,1072)")
    # Provisional: a time of day dated by the series; ``redate`` replaces it from the injection side.
    start = dv.tm_with_date(
        rp, "RadiopharmaceuticalStartTime", ds, ("SeriesDate", "AcquisitionDate", "StudyDate"), default_tz=tz
    )
    return start, "series_date" if start is not None else None, tm


def _tracer(rp: Dataset, ds: Dataset, unit: str, factor: float, tz: tzinfo, bad: Unreadable) -> Tracer:
    total = bad.read(dv.number, rp, "RadionuclideTotalDose")
    mbq = total * factor if total is not None else None
    start, source, tod = bad.read(_start, rp, ds, tz) or (None, None, None)
    half = bad.read(dv.number, rp, "RadionuclideHalfLife")
    nuclide = None
    codes = dv.sequence(rp, "RadionuclideCodeSequence")
    if codes:
        code = code_of(codes[0])
        nuclide = RADIONUCLIDES.get(code, f"{code[0]} ({code[1]})")
    agent = bad.read(dv.text, rp, "Radiopharmaceutical")
    return Tracer(mbq, start, source, tod, half, nuclide, agent, activity_flag(mbq, unit))


def pet_header(ds: Dataset, sop_class: str, site_tz: tzinfo) -> PetHeader:
    unit, factor = TOTAL_DOSE_UNIT[sop_class]
    tz = dv.dataset_tz(ds, site_tz)
    bad = Unreadable()
    weight = bad.read(dv.number, ds, "PatientWeight")
    tracers = tuple(
        _tracer(rp, ds, unit, factor, tz, bad)
        for rp in dv.sequence(ds, "RadiopharmaceuticalInformationSequence")
    )
    if not tracers:
        return PetHeader(None, unit, None, None, None, weight, (), tz, tuple(bad))
    first = tracers[0]
    return PetHeader(
        first.activity_mbq,
        unit,
        first.start_at,
        first.half_life_s,
        first.radionuclide,
        weight,
        tracers,
        tz,
        tuple(bad),
    )


def redate(tracer: Tracer, anchor: datetime | None, tz: tzinfo | None) -> Tracer:
    """A time-of-day-only start dated from the injection side: the date that puts it nearest ``anchor``.

    ``anchor`` is when the injection is known to have happened from another source (the dose
    report's start DateTime, else the dispensing record). Without one the series date stays, and
    ``start_source`` says so."""
    if tracer.start_time_of_day is None or anchor is None or tz is None:
        return tracer
    local = anchor.astimezone(tz)
    best = None
    for days in (-1, 0, 1):
        day = (local + timedelta(days=days)).strftime("%Y%m%d")
        try:
            at = dv.parse_dt(day + tracer.start_time_of_day, default_tz=tz)
        except dv.BadValue:
            return tracer
        if best is None or abs(at - anchor) < abs(best - anchor):
            best = at
    return replace(tracer, start_at=best, start_source="injection_date")
