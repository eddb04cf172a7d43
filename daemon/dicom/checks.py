"""Dose checks, as pure functions: CT reference levels, activity reconciliation, start times.

Each check returns a status a person can read ("ok", "exceeded", "mismatch", or why it
could not be done: "no_dispense_record", "no_header_activity", ...). A check that could
not be done is reported as such in the summary, never as "ok".
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from suitemon.daemon.dicom.codes import HALF_LIVES_S, NOT_COMPARED_TO_CTDI_LEVELS
from suitemon.daemon.dicom.dose_pet import PetHeader
from suitemon.daemon.dicom.dose_sr import CtDoseReport


def decay(activity: float, from_t: datetime, to_t: datetime, half_life_s: float) -> float:
    """A(t) = A0 * 2 ** (-(t - t0) / T_half)."""
    return activity * 2 ** (-(to_t - from_t).total_seconds() / half_life_s)


# -- CT reference levels --------------------------------------------------------------------
@dataclass(frozen=True)
class AppliedLevels:
    source: str  # "local" | "national"
    protocol_rule: str | None  # the local rule's protocol pattern that matched
    ctdivol_mgy: float | None
    dlp_mgycm: float | None


def levels_for(protocol: str | None, ref) -> AppliedLevels:
    """The first local rule whose pattern matches the protocol name (case ignored), else national.

    A local rule that leaves a quantity unset falls back to the national level for it."""
    name = " ".join((protocol or "").split()).casefold()
    nat = ref.national
    for rule in ref.local:
        if name and fnmatch.fnmatchcase(name, " ".join(rule.protocol.split()).casefold()):
            return AppliedLevels(
                "local",
                rule.protocol,
                rule.ctdivol_mgy if rule.ctdivol_mgy is not None else nat.ctdivol_mgy,
                rule.dlp_mgycm if rule.dlp_mgycm is not None else nat.dlp_mgycm,
            )
    return AppliedLevels("national", None, nat.ctdivol_mgy, nat.dlp_mgycm)


@dataclass(frozen=True)
class CtCheck:
    status: str  # "ok" | "exceeded" | "not_checked"
    protocol: str | None
    levels: AppliedLevels | None
    dlp_total_mgycm: float | None
    dlp_total_source: str | None  # "report" | "sum_of_events"
    exceeded: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None


def study_protocol(reports: list[CtDoseReport], image_protocols: list[str]) -> str | None:
    """The protocol of the first non-localiser exposure, else the CT images' ProtocolName."""
    for r in reports:
        for e in r.events:
            if e.protocol and e.acquisition_type not in NOT_COMPARED_TO_CTDI_LEVELS:
                return e.protocol
    for r in reports:
        for e in r.events:
            if e.protocol:
                return e.protocol
    return image_protocols[0] if image_protocols else None


def check_ct(reports: list[CtDoseReport], image_protocols: list[str], ref) -> CtCheck:
    if not reports:
        return CtCheck(
            "not_checked",
            image_protocols[0] if image_protocols else None,
            None,
            None,
            None,
            reason="no CT dose report received",
        )
    protocol = study_protocol(reports, image_protocols)
    study_levels = levels_for(protocol, ref)
    exceeded = []
    for ri, r in enumerate(reports):
        for ei, e in enumerate(r.events):
            if e.ctdivol_mgy is None or e.acquisition_type in NOT_COMPARED_TO_CTDI_LEVELS:
                continue
            lv = levels_for(e.protocol or protocol, ref)
            # "not <=" so that a non-finite value can never pass as below the level (NaN > x is false).
            if lv.ctdivol_mgy is not None and not e.ctdivol_mgy <= lv.ctdivol_mgy:
                exceeded.append(
                    {
                        "quantity": "ctdivol_mgy",
                        "value": e.ctdivol_mgy,
                        "level": lv.ctdivol_mgy,
                        "level_source": lv.source,
                        "event": ei + 1,
                        "report": ri + 1,
                        "protocol": e.protocol or protocol,
                    }
                )
    totals = [r.dlp_total_mgycm for r in reports]
    if all(t is not None for t in totals):
        dlp, source = round(sum(totals), 3), "report"
    else:
        # A report without its total: add up its events, and say so.
        dlp = round(
            sum(
                (
                    r.dlp_total_mgycm
                    if r.dlp_total_mgycm is not None
                    else sum(e.dlp_mgycm or 0.0 for e in r.events)
                )
                for r in reports
            ),
            3,
        )
        source = "sum_of_events"
    if study_levels.dlp_mgycm is not None and not dlp <= study_levels.dlp_mgycm:
        exceeded.append(
            {
                "quantity": "dlp_mgycm",
                "value": dlp,
                "level": study_levels.dlp_mgycm,
                "level_source": study_levels.source,
                "protocol": protocol,
            }
        )
    return CtCheck("exceeded" if exceeded else "ok", protocol, study_levels, dlp, source, exceeded)


# -- activity reconciliation ------------------------------------------------------------------
@dataclass(frozen=True)
class Dispensed:
    record_id: str
    event_id: str
    patient_ref: str | None
    accession: str | None
    room: str | None
    radionuclide: str | None
    measured_mbq: float
    residual_mbq: float | None
    administered_at: datetime
    calibration_at: datetime | None
    administered_mbq: float | None = None  # the dispenser's own net activity at administered_at
    half_life_s: float | None = None

    @property
    def net_mbq(self) -> float:
        """What the patient got: the dispenser's net figure if it gives one, else measured - residual."""
        if self.administered_mbq is not None:
            return self.administered_mbq
        return self.measured_mbq - (self.residual_mbq or 0.0)

    @property
    def reference_at(self) -> datetime:
        """When ``net_mbq`` is stated: the administration for the dispenser's net figure, else the
        calibration time of the assay if given, else the administration."""
        if self.administered_mbq is not None:
            return self.administered_at
        return self.calibration_at or self.administered_at


@dataclass(frozen=True)
class Reconciliation:
    status: str  # ok | mismatch | no_dispense_record | no_header_activity | no_half_life | no_start_time
    tolerance_pct: float
    header_mbq: float | None = None
    header_at: datetime | None = None
    expected_mbq: float | None = None
    deviation_pct: float | None = None
    half_life_s: float | None = None
    half_life_source: str | None = None
    record_id: str | None = None


def half_life(
    header: PetHeader | None, report_half_life: float | None, nuclide: str | None
) -> tuple[float | None, str | None]:
    """Prefer the header's, then the dose report's, then the table for the nuclide (domain.md)."""
    if header is not None and header.half_life_s:
        return header.half_life_s, "header"
    if report_half_life:
        return report_half_life, "dose_report"
    if nuclide and nuclide in HALF_LIVES_S:
        return HALF_LIVES_S[nuclide], "table"
    return None, None


def reconcile(
    header: PetHeader | None,
    dispensed: Dispensed | None,
    *,
    tolerance_pct: float,
    report_half_life_s: float | None = None,
) -> Reconciliation:
    """The header's activity against the dispensed net activity decay-corrected to the header's time."""
    tol = tolerance_pct
    if dispensed is None:
        return Reconciliation(
            "no_dispense_record",
            tol,
            header_mbq=header.activity_mbq if header else None,
            header_at=header.start_at if header else None,
        )
    if header is None or header.activity_mbq is None:
        return Reconciliation("no_header_activity", tol, record_id=dispensed.record_id)
    if header.start_at is None:
        return Reconciliation(
            "no_start_time", tol, header_mbq=header.activity_mbq, record_id=dispensed.record_id
        )
    t_half, source = half_life(
        header, report_half_life_s or dispensed.half_life_s, header.radionuclide or dispensed.radionuclide
    )
    if t_half is None:
        return Reconciliation(
            "no_half_life",
            tol,
            header_mbq=header.activity_mbq,
            header_at=header.start_at,
            record_id=dispensed.record_id,
        )
    expected = decay(dispensed.net_mbq, dispensed.reference_at, header.start_at, t_half)
    if expected <= 0:  # nothing left in the syringe on record, yet the header says something was given
        return Reconciliation(
            "mismatch",
            tol,
            header.activity_mbq,
            header.start_at,
            round(expected, 3),
            None,
            t_half,
            source,
            dispensed.record_id,
        )
    deviation = 100.0 * (header.activity_mbq - expected) / expected
    status = "ok" if abs(deviation) <= tol else "mismatch"
    return Reconciliation(
        status,
        tol,
        header.activity_mbq,
        header.start_at,
        round(expected, 3),
        round(deviation, 2),
        t_half,
        source,
        dispensed.record_id,
    )


def pick_dispensed(
    records: list[Dispensed],
    *,
    accession: str | None,
    patient_ref: str | None,
    around: datetime,
    window_h: float,
) -> Dispensed | None:
    """The administration this study is about: same accession (or, without one, same patient
    reference), given within ``window_h`` before ``around`` (or up to an hour after); nearest wins."""

    def same(r: Dispensed) -> bool:
        if accession and r.accession:
            return r.accession == accession
        return bool(patient_ref) and r.patient_ref == patient_ref

    best, best_gap = None, None
    for r in records:
        if not same(r):
            continue
        gap = (around - r.administered_at).total_seconds()
        if -3600 <= gap <= window_h * 3600 and (best_gap is None or abs(gap) < best_gap):
            best, best_gap = r, abs(gap)
    return best


# -- start times ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StartTimeCheck:
    status: str  # ok | mismatch | not_checked
    tolerance_min: float
    header_at: datetime | None = None
    report_at: datetime | None = None
    difference_min: float | None = None


def check_start_times(
    header_at: datetime | None, report_at: datetime | None, tolerance_min: float
) -> StartTimeCheck:
    if header_at is None or report_at is None:
        return StartTimeCheck("not_checked", tolerance_min, header_at, report_at)
    diff = (header_at - report_at).total_seconds() / 60.0
    return StartTimeCheck(
        "ok" if abs(diff) <= tolerance_min else "mismatch",
        tolerance_min,
        header_at,
        report_at,
        round(diff, 2),
    )
