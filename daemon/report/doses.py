"""Doses: administrations per exam against the local reference level, the median activity per
exam (where a local DRL review starts), dispenser vs PET header reconciliation, CT CTDIvol and
DLP per protocol against their reference levels, and every failed check with its outcome.

Compliance with the local reference level = administrations within the level / administrations
whose level could be evaluated (a per-kg level without a weight is "not evaluated", counted
apart, never as compliant). A DICOM study's dose summary can be re-issued (``revision``): the
latest one per study counts.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from suitemon.daemon.report import plots
from suitemon.daemon.report.context import BuildContext
from suitemon.daemon.report.model import Figure, Section, Table
from suitemon.daemon.report.source import Ev
from suitemon.daemon.report.stats import median, pct, rnd


class Collector:
    def __init__(self) -> None:
        self.admins: list[Ev] = []
        self.studies: dict[str, Ev] = {}
        self.corrections: dict[str, list[Ev]] = defaultdict(list)

    def subscriptions(self):
        return [
            ("dose.administered", self.on_admin),
            ("dicom.dose_summary", self.on_study),
            ("record.correction", self.on_correction),
        ]

    def on_admin(self, ev: Ev) -> None:
        # Only what the tables use: a busy month holds tens of thousands of these.
        d = ev.data
        keep = {k: d.get(k) for k in ("record_id", "patient_ref", "exam", "administered_mbq", "weight_kg")}
        keep["checks"] = [
            c for c in d.get("checks") or [] if c.get("check") == "reference_level" or c.get("ok") is False
        ]
        self.admins.append(Ev(ev.seq, ev.ts, ev.type, None, ev.actor, keep, ev.event_id))

    def on_study(self, ev: Ev) -> None:
        uid = ev.data.get("study_uid")
        if isinstance(uid, str):
            self.studies[uid] = ev  # journal order: the latest revision wins

    def on_correction(self, ev: Ev) -> None:
        if ev.refers_to:
            self.corrections[ev.refers_to].append(ev)

    def build(self, ctx: BuildContext) -> Section:
        sec = Section("doses", "Doses")
        sec.tables += self._administrations(ctx, sec)
        sec.tables += self._studies(ctx)
        sec.tables.append(self._failed(ctx))
        return sec

    # -- dispensed administrations -------------------------------------------------------------
    def _administrations(self, ctx: BuildContext, sec: Section) -> list[Table]:
        per_exam: dict[str, list[dict]] = defaultdict(list)
        for ev in self.admins:
            per_exam[str(ev.data.get("exam") or "unbooked")].append(ev.data)
        rows, values, levels = [], {}, {}
        total_eval = total_ok = 0
        for exam in sorted(per_exam):
            recs = per_exam[exam]
            acts = [
                r["administered_mbq"] for r in recs if isinstance(r.get("administered_mbq"), (int, float))
            ]
            ref = [_check(r, "reference_level") for r in recs]
            evaluated = [c for c in ref if c is not None and c.get("ok") is not None]
            ok = sum(1 for c in evaluated if c["ok"] is True)
            total_eval, total_ok = total_eval + len(evaluated), total_ok + ok
            rows.append(
                [
                    exam,
                    len(recs),
                    rnd(median(acts)),
                    _level_text(ctx, exam),
                    len(evaluated),
                    ok,
                    len(evaluated) - ok,
                    len(recs) - len(evaluated),
                    pct(ok, len(evaluated)),
                ]
            )
            pairs = [
                (r["administered_mbq"], _limit_of(ctx, exam, r))
                for r in recs
                if isinstance(r.get("administered_mbq"), (int, float))
            ]
            values[exam] = [a for a, _ in pairs]
            levels[exam] = [lim for _, lim in pairs]
        t = Table(
            "doses_per_exam",
            "Administrations per exam against the local reference level",
            [
                "exam",
                "administrations",
                "median_mbq",
                "reference_level",
                "evaluated",
                "within_level",
                "above_level",
                "not_evaluated",
                "compliance_pct",
            ],
            rows,
            note="Compliance = within the level / evaluated. The median is where a local DRL review starts.",
        )
        if values:
            sec.figures.append(
                Figure(
                    "doses_vs_level",
                    "Administered activity per exam against its reference level",
                    plots.points_against_levels(values, levels, "MBq"),
                )
            )
        sec.figures_of_note.update(
            {"administrations": len(self.admins), "reference-level compliance %": pct(total_ok, total_eval)}
        )
        return [t]

    # -- DICOM studies -------------------------------------------------------------------------
    def _studies(self, ctx: BuildContext) -> list[Table]:
        rec_rows, status = [], Counter()
        ct: dict[str, list[dict]] = defaultdict(list)
        for ev in self.studies.values():
            d = ev.data
            checks = d.get("checks") or {}
            act, start = checks.get("activity") or {}, checks.get("start_time") or {}
            status[act.get("status", "?")] += 1
            rec_rows.append(
                [
                    ctx.local(ev.ts),
                    d.get("accession") or "",
                    d.get("patient_ref") or "",
                    act.get("status", ""),
                    act.get("header_mbq"),
                    act.get("expected_mbq"),
                    act.get("deviation_pct"),
                    start.get("status", ""),
                    start.get("difference_min"),
                ]
            )
            c = d.get("ct") or {}
            if c.get("status") not in (None, "not_checked"):
                ct[c.get("protocol") or "unknown"].append(c)
        t_rec = Table(
            "doses_reconciliation",
            "Dispenser vs PET header reconciliation, per study",
            [
                "completed",
                "accession",
                "patient_ref",
                "activity_status",
                "header_mbq",
                "expected_mbq",
                "deviation_pct",
                "start_time_status",
                "start_difference_min",
            ],
            rec_rows,
            note="Outcomes: " + (", ".join(f"{k} {v}" for k, v in sorted(status.items())) or "no studies"),
        )
        ct_rows = []
        for proto in sorted(ct):
            studies = ct[proto]
            ctdi = [
                e["ctdivol_mgy"]
                for c in studies
                for e in c.get("events", [])
                if isinstance(e.get("ctdivol_mgy"), (int, float))
            ]
            dlp = [
                c["dlp_total_mgycm"] for c in studies if isinstance(c.get("dlp_total_mgycm"), (int, float))
            ]
            ref = next((c.get("reference") for c in studies if c.get("reference")), None) or {}
            ct_rows.append(
                [
                    proto,
                    len(studies),
                    rnd(median(ctdi), 2),
                    ref.get("ctdivol_mgy"),
                    rnd(median(dlp)),
                    ref.get("dlp_mgycm"),
                    ref.get("source", ""),
                    sum(1 for c in studies if c.get("status") == "exceeded"),
                ]
            )
        t_ct = Table(
            "doses_ct",
            "CT CTDIvol and DLP per protocol against the reference levels",
            [
                "protocol",
                "studies",
                "median_ctdivol_mgy",
                "ctdivol_level_mgy",
                "median_dlp_mgycm",
                "dlp_level_mgycm",
                "level_source",
                "studies_exceeding",
            ],
            ct_rows,
        )
        return [t_rec, t_ct]

    # -- failed checks -------------------------------------------------------------------------
    def _failed(self, ctx: BuildContext) -> Table:
        rows = []
        for ev in self.admins:
            for c in ev.data.get("checks") or []:
                if c.get("ok") is False:
                    rows.append(
                        [
                            ctx.local(ev.ts),
                            ev.data.get("record_id", ""),
                            ev.data.get("patient_ref", ""),
                            ev.data.get("exam", ""),
                            c.get("check", ""),
                            c.get("message", ""),
                            self._outcome(ev),
                        ]
                    )
        for ev in self.studies.values():
            d = ev.data
            checks = d.get("checks") or {}
            if (d.get("ct") or {}).get("status") == "exceeded":
                rows.append(
                    [
                        ctx.local(ev.ts),
                        d.get("accession", ""),
                        d.get("patient_ref", ""),
                        (d.get("ct") or {}).get("protocol", ""),
                        "ct_reference",
                        "; ".join(
                            f"{x.get('quantity')} {x.get('value')} > {x.get('level')}"
                            for x in d["ct"].get("exceeded") or []
                        ),
                        self._outcome(ev),
                    ]
                )
            for name in ("activity", "start_time"):
                st = (checks.get(name) or {}).get("status")
                if st == "mismatch":
                    rows.append(
                        [
                            ctx.local(ev.ts),
                            d.get("accession", ""),
                            d.get("patient_ref", ""),
                            "",
                            name,
                            f"{name} mismatch",
                            self._outcome(ev),
                        ]
                    )
        return Table(
            "doses_failed_checks",
            "Every failed check, with its outcome",
            ["when", "record", "patient_ref", "exam_or_protocol", "check", "finding", "outcome"],
            rows,
            note="Outcome: the corrections recorded against the event (suitemon `correct`), else none yet.",
        )

    def _outcome(self, ev: Ev) -> str:
        fixes = self.corrections.get(ev.event_id) or []
        return (
            "; ".join(f"corrected by {c.actor}: {c.data.get('reason', '')}" for c in fixes)
            or "no correction recorded"
        )


def _check(rec: dict, name: str) -> dict | None:
    for c in rec.get("checks") or []:
        if c.get("check") == name:
            return c
    return None


def _level_text(ctx: BuildContext, exam: str) -> str:
    disp = getattr(ctx.cfg, "dispensing", None)
    e = disp.exams.get(exam) if disp is not None else None
    return (
        e.reference_level.describe() if e is not None and e.reference_level is not None else "none configured"
    )


def _limit_of(ctx: BuildContext, exam: str, rec: dict) -> float | None:
    disp = getattr(ctx.cfg, "dispensing", None)
    e = disp.exams.get(exam) if disp is not None else None
    if e is None or e.reference_level is None:
        return None
    return e.reference_level.limit_mbq(rec.get("weight_kg"))
