"""The checks run on every administration. Pure functions of the record and the config.

Every figure is compared at the time of administration: the syringe's measured
activity is decay-corrected from its assay time to the start of injection, and the
residual (assayed after the injection) back to it; what the patient received is the
difference. A check that cannot be evaluated (no weight for a per-kg rule, no dose
coefficient for the radiopharmaceutical) says so in the record instead of passing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from suitemon.drivers.halflife import UnknownRadionuclide, decay, half_life_s

from suitemon.daemon.doses.config import DispensingConfig


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
    msg = (f"administered {act.administered_mbq:.0f} MBq vs prescribed {e['prescribed_mbq']:.0f} MBq "
           f"({dev:+.1f} %, tolerance +-{cfg.tolerance_pct:g} %)")
    return Check("tolerance", ok, msg, "dose.tolerance", "medium",
                 details={"deviation_pct": round(dev, 2), "tolerance_pct": cfg.tolerance_pct})


def check_reference_level(e, act: Activity, cfg: DispensingConfig) -> Check:
    rp = e.get("radiopharmaceutical")
    level = cfg.reference_levels.get(rp or "")
    if level is None:
        return Check("reference_level", None, f"no local reference level for {rp}", "dose.reference_level", "medium")
    limits: dict[str, float] = {}
    if level.fixed_mbq is not None:
        limits["fixed"] = level.fixed_mbq
    if level.per_kg_mbq is not None and e.get("weight_kg"):
        limits["per_kg"] = level.per_kg_mbq * e["weight_kg"]
    if not limits:
        return Check("reference_level", None, "per-kg reference level needs the patient's weight, none given",
                     "dose.reference_level", "medium")
    over = {k: v for k, v in limits.items() if act.administered_mbq > v}
    exceeded = bool(over) if level.mode == "any" else len(over) == len(limits)
    parts = ", ".join(f"{k} {v:.0f} MBq" for k, v in limits.items())
    msg = (f"administered {act.administered_mbq:.0f} MBq {'above' if exceeded else 'within'} the local reference "
           f"level for {rp} ({parts}; mode {level.mode})")
    if level.per_kg_mbq is not None and "per_kg" not in limits:
        msg += "; per-kg rule not applied: no weight"
    return Check("reference_level", not exceeded, msg, "dose.reference_level", "medium",
                 details={"limits_mbq": {k: round(v, 1) for k, v in limits.items()}, "mode": level.mode})


def check_notifiable(e, act: Activity, cfg: DispensingConfig) -> tuple[Check, float | None]:
    rp = e.get("radiopharmaceutical")
    coef = cfg.coefficients.get(rp or "")
    if coef is None:
        return Check("notifiable", None, f"no dose coefficient for {rp}: effective dose not estimated",
                     "dose.notifiable", "high"), None
    msv = act.administered_mbq * coef
    ok = msv < cfg.notifiable_msv
    msg = (f"effective dose estimate {msv:.1f} mSv ({act.administered_mbq:.0f} MBq x {coef:g} mSv/MBq) "
           f"{'below' if ok else 'at or above'} the notifiable {cfg.notifiable_msv:g} mSv")
    if not ok:
        msg += ": report to the regulator"
    return Check("notifiable", ok, msg, "dose.notifiable", "high",
                 details={"effective_dose_msv": round(msv, 2), "coefficient": coef}), msv


def check_radiopharmaceutical(e, cfg: DispensingConfig) -> Check | None:
    exam = cfg.exams.get(e.get("exam") or "")
    if exam is None:
        if cfg.unknown_exam == "ignore":
            return None
        return Check("exam", False, f"exam code {e.get('exam')!r} is not in the booking table: "
                     f"radiopharmaceutical not verified", "dose.exam_unknown", "low", kind="technical")
    wrong = []
    if e.get("radionuclide") != exam.radionuclide:
        wrong.append(f"radionuclide {e.get('radionuclide')} (booked {exam.radionuclide})")
    if exam.radiopharmaceutical is not None and e.get("radiopharmaceutical") != exam.radiopharmaceutical:
        wrong.append(f"radiopharmaceutical {e.get('radiopharmaceutical')} (booked {exam.radiopharmaceutical})")
    if wrong:
        return Check("radiopharmaceutical", False, f"wrong {' and '.join(wrong)} for exam {e['exam']}: "
                     f"report to the regulator", "dose.wrong_radiopharmaceutical", "high",
                     details={"expected": exam.model_dump(exclude_none=True)})
    return Check("radiopharmaceutical", True, f"matches exam {e['exam']}", "dose.wrong_radiopharmaceutical", "high")


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
        return Check("record", False, "dose record incomplete or implausible: " + "; ".join(issues),
                     "dose.record_invalid", "medium", kind="technical", details={"issues": list(issues)})
    return Check("record", True, "complete", "dose.record_invalid", "medium", kind="technical")


def run_checks(e: Mapping[str, Any], cfg: DispensingConfig) -> tuple[Activity, list[Check], float | None]:
    """Every check for one administration, in a fixed order; (activity, checks, effective dose mSv)."""
    act = administered_activity(e)
    checks = [check_record(e), check_tolerance(e, act, cfg), check_reference_level(e, act, cfg)]
    notifiable, msv = check_notifiable(e, act, cfg)
    checks.append(notifiable)
    rp = check_radiopharmaceutical(e, cfg)
    if rp is not None:
        checks.append(rp)
    checks.append(check_residual(e, act, cfg))
    return act, checks, msv


__all__ = ["Check", "Activity", "administered_activity", "run_checks", "check_tolerance", "check_reference_level",
           "check_notifiable", "check_radiopharmaceutical", "check_residual", "check_record"]
