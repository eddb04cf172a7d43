"""Dose facts from structured reports: CT dose (TID 10011) and radiopharmaceutical dose (TID 10021).

Pure functions of a pydicom Dataset. Concepts are matched on (code value, scheme) with
the SRT and SCT variants of each (``dicom_codes.CONCEPTS``), never on code meaning text.
Every number is read with its unit and converted (mGy, mGy.cm, MBq, s, kg). One value that
cannot be interpreted (unknown unit, malformed or non-finite number, bad date) is left out and
named in the report's ``unreadable`` list; the report's other values are kept. Only a report
whose structure cannot be read (no document title, no content) is refused whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo

from pydicom.dataset import Dataset

from suitemon.daemon.dicom import values as dv
from suitemon.daemon.dicom.codes import (
    ACQUISITION_TYPES,
    PHANTOMS,
    RADIONUCLIDES,
    UNITS,
    Code,
    concept_is,
    normalise_scheme,
    ucum_unit,
)

# FDG is what this suite gives almost every patient; other agents are reported by code.
RADIOPHARMACEUTICALS: dict[Code, str] = {("35321007", "SCT"): "FDG", ("C-B1031", "SRT"): "FDG"}


@dataclass(frozen=True)
class CtEvent:
    acquisition_type: str | None
    ctdivol_mgy: float | None
    dlp_mgycm: float | None
    phantom: str | None
    protocol: str | None
    event_uid: str | None


@dataclass(frozen=True)
class CtDoseReport:
    sop_instance: str
    events: tuple[CtEvent, ...]
    dlp_total_mgycm: float | None
    event_count: int | None
    unreadable: tuple[str, ...] = ()


@dataclass(frozen=True)
class RpAdministration:
    activity_mbq: float | None
    start_at: datetime | None
    half_life_s: float | None
    radionuclide: str | None
    radiopharmaceutical: str | None
    pre_activity_mbq: float | None
    post_activity_mbq: float | None
    event_uid: str | None


@dataclass(frozen=True)
class RpDoseReport:
    sop_instance: str
    administrations: tuple[RpAdministration, ...]
    weight_kg: float | None
    unreadable: tuple[str, ...] = ()


# -- content items -----------------------------------------------------------------------
def code_of(item: Dataset) -> Code:
    value = dv.text(item, "CodeValue") or dv.text(item, "LongCodeValue") or dv.text(item, "URNCodeValue")
    if value is None:
        raise dv.BadValue("coded entry without CodeValue / LongCodeValue / URNCodeValue")
    scheme = dv.text(item, "CodingSchemeDesignator", required=True)
    return value, normalise_scheme(scheme)


def concept(item: Dataset) -> Code | None:
    seq = dv.sequence(item, "ConceptNameCodeSequence")
    return code_of(seq[0]) if seq else None


def children(item: Dataset) -> list[Dataset]:
    return dv.sequence(item, "ContentSequence")


def walk(
    items: list[Dataset], skip: tuple[str, ...] = ("ct_dose_check_details", "ct_dose_check_notification")
) -> Iterator[Dataset]:
    """Every content item below ``items``, depth first, leaving out sub-trees named in ``skip``."""
    for item in items:
        c = concept(item)
        if any(concept_is(c, s) for s in skip):
            continue
        yield item
        yield from walk(children(item), skip)


def first(items: list[Dataset], name: str) -> Dataset | None:
    for item in walk(items):
        if concept_is(concept(item), name):
            return item
    return None


def _display(code: Code) -> str:
    return f"{code[0]} ({code[1]})"


def num(item: Dataset, quantity: str, what: str) -> float | None:
    """A NUM item's value converted to the unit of ``quantity`` (see dicom_codes.UNITS)."""
    mv = dv.sequence(item, "MeasuredValueSequence")
    if not mv:
        return None  # a NUM with only a qualifier ("value unknown"): no number, not an error
    m = mv[0]
    value = dv.number(m, "FloatingPointValue") if dv.present(m, "FloatingPointValue") else None
    if value is None:
        value = dv.number(m, "NumericValue", required=True)
    units = dv.sequence(m, "MeasurementUnitsCodeSequence", required=True)
    spelled, scheme = code_of(units[0])
    unit = ucum_unit(spelled)
    conv = UNITS.get(unit) if unit else None
    if conv is None or conv[0] != quantity:
        raise dv.BadValue(
            f"{what} is in unit {spelled!r} ({scheme}), expected a {quantity.split('_')[0]} unit"
        )
    return value * conv[1]


class Unreadable(list):
    """The values of one report that could not be interpreted, each with its reason."""

    def read(self, fn, *args):
        """``fn(*args)``, or None with the reason noted when the value cannot be interpreted."""
        try:
            return fn(*args)
        except dv.BadValue as err:
            self.append(str(err))
            return None


def coded_value(item: Dataset) -> Code | None:
    seq = dv.sequence(item, "ConceptCodeSequence")
    return code_of(seq[0]) if seq else None


def _root(ds: Dataset) -> Code | None:
    seq = dv.sequence(ds, "ConceptNameCodeSequence")
    return code_of(seq[0]) if seq else None


def report_kind(ds: Dataset) -> str | None:
    """'ct_dose' or 'rp_dose' from the document title; None for any other structured report."""
    root = _root(ds)
    if concept_is(root, "xray_dose_report"):
        return "ct_dose"
    if concept_is(root, "rp_dose_report"):
        return "rp_dose"
    return None


# -- CT radiation dose (TID 10011 / 10012 / 10013) ---------------------------------------------
def _ct_event(container: Dataset, bad: Unreadable) -> CtEvent:
    items = children(container)
    acq = phantom = protocol = uid = None
    ctdi = dlp = None
    for item in walk(items):
        c = concept(item)
        if concept_is(c, "ct_acquisition_type") and acq is None:
            code = coded_value(item)
            acq = ACQUISITION_TYPES.get(code, _display(code)) if code else None
        elif concept_is(c, "ctdivol") and ctdi is None:
            ctdi = bad.read(num, item, "dose_mGy", "Mean CTDIvol (113830)")
        elif concept_is(c, "dlp") and dlp is None:
            dlp = bad.read(num, item, "dlp_mGy.cm", "DLP (113838)")
        elif concept_is(c, "ct_phantom") and phantom is None:
            code = coded_value(item)
            phantom = PHANTOMS.get(code, _display(code)) if code else None
        elif concept_is(c, "acquisition_protocol") and protocol is None:
            protocol = dv.text(item, "TextValue")
        elif concept_is(c, "irradiation_event_uid") and uid is None:
            uid = bad.read(dv.uid, item, "UID")
    return CtEvent(acq, ctdi, dlp, phantom, protocol, uid)


def ct_dose_report(ds: Dataset) -> CtDoseReport:
    if report_kind(ds) != "ct_dose":
        raise dv.BadValue("not an X-Ray Radiation Dose Report (113701, DCM)")
    top = children(ds)
    events: list[CtEvent] = []
    total = count = None
    bad = Unreadable()
    for item in top:
        c = concept(item)
        if concept_is(c, "ct_acquisition"):
            events.append(_ct_event(item, bad))
        elif concept_is(c, "ct_accumulated"):
            for sub in walk(children(item)):
                sc = concept(sub)
                if concept_is(sc, "ct_dlp_total") and total is None:
                    total = bad.read(num, sub, "dlp_mGy.cm", "CT Dose Length Product Total (113813)")
                elif concept_is(sc, "ct_event_count") and count is None:
                    n = bad.read(num_plain, sub)
                    count = int(n) if n is not None else None
    return CtDoseReport(dv.uid(ds, "SOPInstanceUID", required=True), tuple(events), total, count, tuple(bad))


def num_plain(item: Dataset) -> float | None:
    """A NUM item's bare number (counts, whose unit is '{events}' or '1')."""
    mv = dv.sequence(item, "MeasuredValueSequence")
    if not mv:
        return None
    return dv.number(mv[0], "NumericValue", required=True)


# -- Radiopharmaceutical radiation dose (TID 10021) ---------------------------------------------
def _start(item: Dataset, tz: tzinfo) -> datetime | None:
    value = dv.text(item, "DateTime")
    return (
        dv.parse_dt(value, default_tz=tz, what="Radiopharmaceutical Start DateTime (123003)")
        if value
        else None
    )


def _administration(container: Dataset, tz: tzinfo, bad: Unreadable) -> RpAdministration:
    activity = start = half = nuclide = agent = pre = post = uid = None
    for item in walk(children(container)):
        c = concept(item)
        if concept_is(c, "administered_activity") and activity is None:
            activity = bad.read(num, item, "activity_MBq", "Administered activity (113507)")
        elif concept_is(c, "rp_start") and start is None:
            start = bad.read(_start, item, tz)
        elif concept_is(c, "half_life") and half is None:
            half = bad.read(num, item, "time_s", "Radionuclide half-life")
        elif concept_is(c, "radionuclide") and nuclide is None:
            code = coded_value(item)
            nuclide = RADIONUCLIDES.get(code, _display(code)) if code else None
        elif concept_is(c, "radiopharmaceutical") and agent is None:
            code = coded_value(item)
            agent = RADIOPHARMACEUTICALS.get(code, _display(code)) if code else None
        elif concept_is(c, "pre_administration_activity") and pre is None:
            pre = bad.read(num, item, "activity_MBq", "Pre-administration measured activity (113508)")
        elif concept_is(c, "post_administration_activity") and post is None:
            post = bad.read(num, item, "activity_MBq", "Post-administration measured activity (113509)")
        elif concept_is(c, "rp_administration_uid") and uid is None:
            uid = bad.read(dv.uid, item, "UID")
    return RpAdministration(activity, start, half, nuclide, agent, pre, post, uid)


def rp_dose_report(ds: Dataset, site_tz: tzinfo) -> RpDoseReport:
    if report_kind(ds) != "rp_dose":
        raise dv.BadValue("not a Radiopharmaceutical Radiation Dose Report (113500, DCM)")
    tz = dv.dataset_tz(ds, site_tz)
    top = children(ds)
    bad = Unreadable()
    admins = [
        _administration(item, tz, bad) for item in walk(top) if concept_is(concept(item), "rp_administration")
    ]
    weight = None
    for item in walk(top):
        if concept_is(concept(item), "body_weight"):
            weight = bad.read(num, item, "mass_kg", "Patient weight (29463-7, LN)")
            break
    return RpDoseReport(dv.uid(ds, "SOPInstanceUID", required=True), tuple(admins), weight, tuple(bad))
