"""The checks run on every administration. Pure functions of the record and the config.

Every figure is compared at the time of administration: the syringe's measured
activity is decay-corrected from its assay time to the start of injection, and the
residual (assayed after the injection) back to it; what the patient received is the
difference. A check that cannot be evaluated (no weight for a per-kg rule, no dose
coefficient for the radiopharmaceutical) says so in the record instead of passing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from suitemon.daemon.doses.config import DispensingConfig
from suitemon.daemon.doses.notifiable import WRONG_RADIOPHARMACEUTICAL, criterion_for
from suitemon.drivers.halflife import UnknownRadionuclide, decay, half_life_s


@dataclass(frozen=True)
class Check:
    """One check's outcome. ok None = not evaluated (reason in message)."""

    name: str  # tolerance | reference_level | notifiable | radiopharmaceutical | residual | exam | record
    ok: bool | None
    message: str
    alarm_type: str
    priority: str
    kind: str = "clinical"
    details: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "priority": self.priority, "message": self.message}


@dataclass(frozen=True)
class Activity:
    administered_mbq: float  # what the patient received, at administered_at
    measured_at_admin_mbq: float  # syringe activity decay-corrected to administered_at
    residual_at_admin_mbq: float | None
    half_life_s: float | None  # None: radionuclide unknown, no decay correction was possible


def administered_activity(e: Mapping[str, Any]) -> Activity:
    """Net activity at the start of injection: measured (corrected forward) - residual (corrected back)."""
    try:
        t_half = half_life_s(e["radionuclide"] or "", e.get("half_life_s"))
    except UnknownRadionuclide:
        t_half = None
    t_adm = e["administered_at"]
    measured = e["measured_mbq"]
    if t_half is not None and t_adm is not None and e.get("measured_at") is not None:
        measured = decay(measured, e["measured_at"], t_adm, t_half)
    residual = e.get("residual_mbq")
    if residual is not None and t_half is not None and t_adm is not None and e.get("residual_at") is not None:
        residual = decay(residual, e["residual_at"], t_adm, t_half)
    net = measured - (residual or 0.0)
    return Activity(net, measured, residual, t_half)


def _pct(a: float, b: float) -> float:
    return (a - b) / b * 100.0 if b else float("inf")


def check_tolerance(e, act: Activity, cfg: DispensingConfig) -> Check:
    dev = _pct(act.administered_mbq, e["prescribed_mbq"])
    ok = abs(dev) <= cfg.tolerance_pct
    msg = (
        f"administered {act.administered_mbq:.0f} MBq vs prescribed {e['prescribed_mbq']:.0f} MBq "
        f"({dev:+.1f} %, tolerance +-{cfg.tolerance_pct:g} %)"
    )
    return Check(
        "tolerance",
        ok,
        msg,
        "dose.tolerance",
        "medium",
        details={"deviation_pct": round(dev, 2), "tolerance_pct": cfg.tolerance_pct},
    )


def check_reference_level(e, act: Activity, cfg: DispensingConfig) -> Check:
    """The booked exam's local reference level, by its one named rule (fixed or per kg)."""
    exam = cfg.exams.get(e.get("exam") or "")
    level = exam.reference_level if exam is not None else None
    if level is None:
        return Check(
            "reference_level",
            None,
            f"no local reference level configured for exam {e.get('exam')!r}",
            "dose.reference_level",
            "medium",
        )
    limit = level.limit_mbq(e.get("weight_kg"))
    details = {"rule": level.rule, "limit_mbq": round(limit, 1) if limit is not None else None}
    if level.rule == "per_kg":
        details.update(mbq_per_kg=level.mbq_per_kg, weight_kg=e.get("weight_kg"))
    if limit is None:
        return Check(
            "reference_level",
            None,
            f"per-kg reference level ({level.mbq_per_kg:g} MBq/kg) needs the "
            "patient's weight, none given: not evaluated",
            "dose.reference_level",
            "medium",
            details=details,
        )
    exceeded = act.administered_mbq > limit
    how = (
        f"{level.mbq_per_kg:g} MBq/kg x {e['weight_kg']:g} kg = {limit:.0f} MBq"
        if level.rule == "per_kg"
        else f"fixed {limit:.0f} MBq"
    )
    msg = (
        f"administered {act.administered_mbq:.0f} MBq {'above' if exceeded else 'within'} the local reference "
        f"level for exam {e['exam']} ({how})"
    )
    return Check("reference_level", not exceeded, msg, "dose.reference_level", "medium", details=details)


def check_notifiable(
    e, act: Activity, cfg: DispensingConfig, *, wrong_radiopharmaceutical: bool = False
) -> tuple[Check, float | None]:
    """The CQC IR(ME)R criteria (daemon/doses/notifiable.py): received vs intended effective dose."""
    rp = e.get("radiopharmaceutical")
    coef = cfg.coefficients.get(rp or "")
    msv = act.administered_mbq * coef if coef is not None else None
    if wrong_radiopharmaceutical:
        c = WRONG_RADIOPHARMACEUTICAL
        est = f"; effective dose estimate {msv:.1f} mSv" if msv is not None else ""
        return Check(
            "notifiable",
            False,
            f"{c.text} (CQC){est}: report to the regulator",
            "dose.notifiable",
            "high",
            details={
                "criterion": c.code,
                "criterion_text": c.text,
                "effective_dose_msv": round(msv, 2) if msv is not None else None,
            },
        ), msv
    if coef is None:
        return Check(
            "notifiable",
            None,
            f"no dose coefficient for {rp}: effective dose not estimated",
            "dose.notifiable",
            "high",
        ), None
    intended = e["prescribed_mbq"] * coef
    c = criterion_for(intended)
    ok = msv < c.threshold_msv
    msg = (
        f"effective dose estimate {msv:.1f} mSv ({act.administered_mbq:.0f} MBq x {coef:g} mSv/MBq), intended "
        f"{intended:.1f} mSv: {'below' if ok else 'at or above'} {c.threshold_msv:.1f} mSv (CQC code {c.code}, "
        f"{c.text})"
    )
    if not ok:
        msg += ": report to the regulator"
    return Check(
        "notifiable",
        ok,
        msg,
        "dose.notifiable",
        "high",
        details={
            "effective_dose_msv": round(msv, 2),
            "intended_msv": round(intended, 2),
            "coefficient": coef,
            "criterion": c.code,
            "criterion_text": c.text,
            "threshold_msv": round(c.threshold_msv, 2),
        },
    ), msv


def check_radiopharmaceutical(e, cfg: DispensingConfig) -> Check | None:
    exam = cfg.exams.get(e.get("exam") or "")
    if exam is None:
        if cfg.unknown_exam == "ignore":
            return None
        return Check(
            "exam",
            False,
            f"exam code {e.get('exam')!r} is not in the booking table: radiopharmaceutical not verified",
            "dose.exam_unknown",
            "low",
            kind="technical",
        )
    wrong = []
    if e.get("radionuclide") != exam.radionuclide:
        wrong.append(f"radionuclide {e.get('radionuclide')} (booked {exam.radionuclide})")
    if exam.radiopharmaceutical is not None and e.get("radiopharmaceutical") != exam.radiopharmaceutical:
        wrong.append(
            f"radiopharmaceutical {e.get('radiopharmaceutical')} (booked {exam.radiopharmaceutical})"
        )
    if wrong:
        return Check(
            "radiopharmaceutical",
            False,
            f"wrong {' and '.join(wrong)} for exam {e['exam']}: report to the regulator",
            "dose.wrong_radiopharmaceutical",
            "high",
            details={"expected": exam.model_dump(exclude_none=True)},
        )
    return Check(
        "radiopharmaceutical", True, f"matches exam {e['exam']}", "dose.wrong_radiopharmaceutical", "high"
    )


def check_residual(e, act: Activity, cfg: DispensingConfig) -> Check:
    if act.residual_at_admin_mbq is None:
        return Check("residual", None, "residual not measured", "dose.residual", "low")
    res, meas = act.residual_at_admin_mbq, act.measured_at_admin_mbq
    pct = res / meas * 100.0 if meas else float("inf")
    over = []
    if cfg.residual_limit_pct is not None and pct > cfg.residual_limit_pct:
        over.append(f"{cfg.residual_limit_pct:g} %")
    if cfg.residual_limit_mbq is not None and res > cfg.residual_limit_mbq:
        over.append(f"{cfg.residual_limit_mbq:g} MBq")
    msg = f"residual {res:.1f} MBq ({pct:.1f} % of the measured activity)"
    msg += f" above the limit ({', '.join(over)})" if over else " within limits"
    return Check("residual", not over, msg, "dose.residual", "low", details={"residual_pct": round(pct, 2)})


def check_record(e) -> Check:
    issues = e.get("issues") or []
    if issues:
        return Check(
            "record",
            False,
            "dose record incomplete or implausible: " + "; ".join(issues),
            "dose.record_invalid",
            "medium",
            kind="technical",
            details={"issues": list(issues)},
        )
    return Check("record", True, "complete", "dose.record_invalid", "medium", kind="technical")


def run_checks(e: Mapping[str, Any], cfg: DispensingConfig) -> tuple[Activity, list[Check], float | None]:
    """Every check for one administration, in a fixed order; (activity, checks, effective dose mSv)."""
    act = administered_activity(e)
    checks = [check_record(e), check_tolerance(e, act, cfg), check_reference_level(e, act, cfg)]
    rp = check_radiopharmaceutical(e, cfg)
    notifiable, msv = check_notifiable(
        e,
        act,
        cfg,
        wrong_radiopharmaceutical=rp is not None and rp.ok is False and rp.name == "radiopharmaceutical",
    )
    checks.append(notifiable)
    if rp is not None:
        checks.append(rp)
    checks.append(check_residual(e, act, cfg))
    return act, checks, msv


__all__ = [
    "Activity",
    "Check",
    "administered_activity",
    "check_notifiable",
    "check_radiopharmaceutical",
    "check_record",
    "check_reference_level",
    "check_residual",
    "check_tolerance",
    "run_checks",
]
