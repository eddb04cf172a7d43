"""Studies being received: what arrived, from which associations, and when they are complete.

Owned by the event loop. A study is complete when every association that delivered to
it has ended, nothing received is still waiting to be parsed, and no instance has
arrived for ``study_idle_s``. Completed studies are kept (bounded) so a late instance
or a late dispensing record revises the summary instead of starting a blank one.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suitemon.daemon.dicom.checks import (
    CtCheck,
    Dispensed,
    Reconciliation,
    StartTimeCheck,
    check_ct,
    check_start_times,
    reconcile,
)
from suitemon.daemon.dicom.ct_merge import MergedCt, merge_ct_reports
from suitemon.daemon.dicom.dose_pet import PetHeader, Tracer, redate
from suitemon.daemon.dicom.dose_sr import CtDoseReport, RpDoseReport
from suitemon.daemon.dicom.parse import Identity, Parsed
from suitemon.daemon.dicom.values import utc_iso

RECENT_STUDIES = 200
MAX_REASONS = 5


def _iso(t: float | None) -> str | None:
    return None if t is None else utc_iso(datetime.fromtimestamp(t, UTC))


@dataclass
class Study:
    uid: str
    accession: str | None = None
    patient_ref: str | None = None
    identity_conflict: bool = False
    sop_instances: set[str] = field(default_factory=set)
    kinds: Counter = field(default_factory=Counter)
    unparseable: int = 0
    unparseable_reasons: list[str] = field(default_factory=list)
    first_received: float | None = None
    last_received: float | None = None
    last_mono: float = 0.0
    assocs: set[int] = field(default_factory=set)
    files: list[Path] = field(default_factory=list)
    ct_protocols: list[str] = field(default_factory=list)
    pet_headers: dict[tuple, list] = field(default_factory=dict)  # key -> [PetHeader, count]
    ct_reports: dict[str, CtDoseReport] = field(default_factory=dict)
    rp_reports: dict[str, RpDoseReport] = field(default_factory=dict)
    revision: int = 0
    completed: bool = False
    activity_status: str | None = None  # of the last summary: a late dispensing record may revise it

    def _arrival(self, assoc: int | None, wall: float, mono: float) -> None:
        self.first_received = wall if self.first_received is None else min(self.first_received, wall)
        self.last_received = wall if self.last_received is None else max(self.last_received, wall)
        self.last_mono = max(self.last_mono, mono)
        if assoc is not None:
            self.assocs.add(assoc)

    def _identity(self, ident: Identity) -> None:
        for attr in ("accession", "patient_ref"):
            new, old = getattr(ident, attr), getattr(self, attr)
            if new and not old:
                setattr(self, attr, new)
            elif new and old and new != old:
                self.identity_conflict = True  # two patients in one study: reported, never merged silently

    def add(self, parsed: Parsed, path: Path, assoc: int | None, wall: float, mono: float) -> None:
        self._arrival(assoc, wall, mono)
        self._identity(parsed.ident)
        self.files.append(path)
        if parsed.ident.sop_instance in self.sop_instances:
            return  # a re-send: the file goes, the count stays
        self.sop_instances.add(parsed.ident.sop_instance)
        self.kinds[parsed.kind] += 1
        if parsed.protocol and parsed.protocol not in self.ct_protocols:
            self.ct_protocols.append(parsed.protocol)
        if parsed.pet is not None:
            slot = self.pet_headers.setdefault(parsed.pet.key(), [parsed.pet, 0])
            slot[1] += 1
        if parsed.ct_dose is not None:
            self.ct_reports[parsed.ct_dose.sop_instance] = parsed.ct_dose
        if parsed.rp_dose is not None:
            self.rp_reports[parsed.rp_dose.sop_instance] = parsed.rp_dose

    def add_unparseable(
        self, ident: Identity, reason: str, assoc: int | None, wall: float, mono: float
    ) -> None:
        self._arrival(assoc, wall, mono)
        self._identity(ident)
        self.unparseable += 1
        if len(self.unparseable_reasons) < MAX_REASONS:
            self.unparseable_reasons.append(reason)

    @property
    def instances(self) -> int:
        return sum(self.kinds.values())

    def pet(self) -> tuple[PetHeader | None, int]:
        if not self.pet_headers:
            return None, 0
        header, _ = max(self.pet_headers.values(), key=lambda hc: hc[1])
        return header, len(self.pet_headers)

    def rp_administration(self, radionuclide: str | None = None):
        """The administration the checks use (of ``radionuclide`` when given and reported, else the
        first), its report, and how many administrations the reports hold."""
        n = sum(len(x.administrations) for x in self.rp_reports.values())
        if radionuclide:
            for r in self.rp_reports.values():
                for a in r.administrations:
                    if a.radionuclide == radionuclide:
                        return a, r, n
        for r in self.rp_reports.values():
            if r.administrations:
                return r.administrations[0], r, n
        return None, (next(iter(self.rp_reports.values())) if self.rp_reports else None), 0

    def unreadable(self) -> list[str]:
        """Values of this study's instances that could not be interpreted (their other values were kept)."""
        out = [
            f"CT dose report {r.sop_instance[-12:]}: {why}"
            for r in self.ct_reports.values()
            for why in r.unreadable
        ]
        out += [
            f"RP dose report {r.sop_instance[-12:]}: {why}"
            for r in self.rp_reports.values()
            for why in r.unreadable
        ]
        out += [f"PET header: {why}" for h, _ in self.pet_headers.values() for why in h.unreadable]
        return out

    def injection_anchor(self, dispensed: Dispensed | None = None) -> datetime | None:
        """When the injection happened, from the injection side: the dose report's start, else the
        dispensing record; else a header start that carried its own date."""
        admin, _, _ = self.rp_administration()
        if admin is not None and admin.start_at is not None:
            return admin.start_at
        if dispensed is not None:
            return dispensed.administered_at
        header, _ = self.pet()
        if header is not None and header.start_source == "datetime":
            return header.start_at
        return None


class StudyBook:
    def __init__(self):
        self.active: dict[str, Study] = {}
        self.recent: OrderedDict[str, Study] = OrderedDict()

    def get(self, uid: str) -> Study:
        s = self.active.get(uid)
        if s is None:
            s = self.recent.pop(uid, None)
            if s is not None:
                s.completed = False  # late arrivals re-open it; its summary gets a new revision
                s.assocs.clear()
            else:
                s = Study(uid)
            self.active[uid] = s
        return s

    def ready(self, now_mono: float, idle_s: float, open_assocs: set[int], backlog: int) -> list[Study]:
        if backlog:
            return []  # an instance still in the queue may belong to any study
        return [
            s
            for s in self.active.values()
            if not (s.assocs & open_assocs) and now_mono - s.last_mono >= idle_s
        ]

    def retire(self, study: Study) -> None:
        self.active.pop(study.uid, None)
        study.completed = True
        study.files = []
        self.recent[study.uid] = study
        self.recent.move_to_end(study.uid)
        while len(self.recent) > RECENT_STUDIES:
            self.recent.popitem(last=False)


# -- the summary -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Findings:
    ct: CtCheck
    activity: Reconciliation
    start_time: StartTimeCheck
    header: PetHeader | None = None  # the header as evaluated: primary tracer chosen, start dated
    merged_ct: MergedCt | None = None


def _primary(header: PetHeader, dispensed: Dispensed | None, admin) -> Tracer | None:
    """In a dual-tracer header, the tracer the administration on record is about; else the first."""
    wanted = (dispensed.radionuclide if dispensed else None) or (admin.radionuclide if admin else None)
    for t in header.tracers:
        if wanted and t.radionuclide == wanted:
            return t
    return header.primary


def evaluated_header(study: Study, dispensed: Dispensed | None) -> PetHeader | None:
    header, _ = study.pet()
    if header is None or not header.tracers:
        return header
    admin, _, _ = study.rp_administration()
    tracer = _primary(header, dispensed, admin)
    anchor = study.injection_anchor(dispensed)
    tracers = tuple(redate(t, anchor, header.tz) for t in header.tracers)
    chosen = tracers[header.tracers.index(tracer)]
    return replace(header, tracers=tracers).with_primary(chosen)


def evaluate(study: Study, dispensed: Dispensed | None, dcfg) -> Findings:
    header = evaluated_header(study, dispensed)
    admin, _, _ = study.rp_administration(header.radionuclide if header else None)
    merged = merge_ct_reports(list(study.ct_reports.values()))
    ct = check_ct(merged.reports, study.ct_protocols, dcfg.reference_levels)
    unread = [why for r in merged.reports for why in r.unreadable]
    if ct.status == "ok" and unread:
        # Not "ok": a value the check needed could not be read (docs/decisions.md).
        ct = replace(ct, status="incomplete", reason=f"{len(unread)} value(s) unreadable: {unread[0]}")
    activity = reconcile(
        header,
        dispensed,
        tolerance_pct=dcfg.activity_tolerance_pct,
        report_half_life_s=admin.half_life_s if admin else None,
    )
    start = check_start_times(
        header.start_at if header else None, admin.start_at if admin else None, dcfg.start_time_tolerance_min
    )
    return Findings(ct, activity, start, header, merged)


def _tracer(t: Tracer) -> dict[str, Any]:
    return {
        "radiopharmaceutical": t.radiopharmaceutical,
        "radionuclide": t.radionuclide,
        "activity_mbq": t.activity_mbq,
        "start_at": utc_iso(t.start_at),
        "start_source": t.start_source,
        "half_life_s": t.half_life_s,
        "activity_flag": t.activity_flag,
    }


def summary(study: Study, dispensed: Dispensed | None, f: Findings, completed_at: float) -> dict[str, Any]:
    """The dose summary: journaled as ``dicom.dose_summary``, published on ``dose/study``.

    No names, birth dates or hospital numbers: the patient is ``patient_ref`` (pseudonym.py)."""
    first, distinct = study.pet()
    header = f.header if f.header is not None else first
    admin, rp, n_admin = study.rp_administration(header.radionuclide if header else None)
    ct = f.ct
    merged = f.merged_ct or merge_ct_reports(list(study.ct_reports.values()))
    return {
        "study_uid": study.uid,
        "accession": study.accession,
        "patient_ref": study.patient_ref,
        "room": dispensed.room if dispensed else None,
        "revision": study.revision,
        "identity_conflict": study.identity_conflict,
        "first_received_at": _iso(study.first_received),
        "last_received_at": _iso(study.last_received),
        "completed_at": _iso(completed_at),
        "instances": {
            "total": study.instances,
            "ct_images": study.kinds["ct_image"],
            "pet_images": study.kinds["pet_image"],
            "ct_dose_reports": study.kinds["ct_dose"],
            "rp_dose_reports": study.kinds["rp_dose"],
            "other": study.kinds["other"],
            "unparseable": study.unparseable,
        },
        "unparseable_reasons": list(study.unparseable_reasons),
        "unreadable_values": study.unreadable(),
        "ct": {
            "status": ct.status,
            "reason": ct.reason,
            "protocol": ct.protocol,
            "events": [
                {
                    "acquisition_type": e.acquisition_type,
                    "ctdivol_mgy": e.ctdivol_mgy,
                    "dlp_mgycm": e.dlp_mgycm,
                    "phantom": e.phantom,
                    "protocol": e.protocol,
                }
                for e in merged.events
            ],
            "reports_received": merged.received,
            "reports_superseded": len(merged.superseded),
            "dlp_total_mgycm": ct.dlp_total_mgycm,
            "dlp_total_source": ct.dlp_total_source,
            "reference": None
            if ct.levels is None
            else {
                "source": ct.levels.source,
                "protocol_rule": ct.levels.protocol_rule,
                "ctdivol_mgy": ct.levels.ctdivol_mgy,
                "dlp_mgycm": ct.levels.dlp_mgycm,
            },
            "exceeded": ct.exceeded,
        },
        "pet": None
        if header is None
        else {
            "activity_mbq": header.activity_mbq,
            "activity_unit_in_header": header.activity_unit,
            "start_at": utc_iso(header.start_at),
            "half_life_s": header.half_life_s,
            "radionuclide": header.radionuclide,
            "weight_kg": header.weight_kg,
            "distinct_headers": distinct,
            "start_source": header.start_source,
            "activity_flag": header.activity_flag,
            "radiopharmaceuticals": [_tracer(t) for t in header.tracers],
        },
        "rp_report": None
        if rp is None
        else {
            "administrations": n_admin,
            "activity_mbq": admin.activity_mbq if admin else None,
            "start_at": utc_iso(admin.start_at) if admin else None,
            "half_life_s": admin.half_life_s if admin else None,
            "radionuclide": admin.radionuclide if admin else None,
            "radiopharmaceutical": admin.radiopharmaceutical if admin else None,
            "weight_kg": rp.weight_kg,
        },
        "dispensed": None
        if dispensed is None
        else {
            "record_id": dispensed.record_id,
            "event_id": dispensed.event_id,
            "measured_mbq": dispensed.measured_mbq,
            "residual_mbq": dispensed.residual_mbq,
            "administered_at": utc_iso(dispensed.administered_at),
            "room": dispensed.room,
        },
        "checks": {
            "ct_reference": ct.status,
            "activity": {
                "status": f.activity.status,
                "tolerance_pct": f.activity.tolerance_pct,
                "header_mbq": f.activity.header_mbq,
                "expected_mbq": f.activity.expected_mbq,
                "deviation_pct": f.activity.deviation_pct,
                "half_life_s": f.activity.half_life_s,
                "half_life_source": f.activity.half_life_source,
            },
            "start_time": {
                "status": f.start_time.status,
                "tolerance_min": f.start_time.tolerance_min,
                "header_at": utc_iso(f.start_time.header_at),
                "report_at": utc_iso(f.start_time.report_at),
                "difference_min": f.start_time.difference_min,
            },
        },
    }
