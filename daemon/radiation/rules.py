"""Area radiation rules: location- and occupancy-aware levels, spills, detector health, daily dose.

Shared by every area-monitor kind (they report the same value keys, drivers/radiation.py).
Per reading:

- over-range and a detector fault are HIGH technical alarms; a reading of exactly zero for
  ``zero_fault_s`` is a detector-fault warning. None of these readings ever lowers a level:
  a dead detector must not read as "all clear".
- the warning and alarm levels come from the area's ``normal`` set, or its ``occupied``
  set while the occupancy fact (core ``occupancy`` service) says a patient is in the area;
  each level has hysteresis and an alarm-condition delay measured on reading timestamps.
- a step rise that occupancy does not explain raises a latching "suspected spill".
- the dose rate is integrated per local day and published with the state.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from suitemon.daemon.alarms import iso, parse_iso
from suitemon.daemon.radiation.logic import DailyDose, LevelTracker, RiseDetector, ZeroWatch
from suitemon.daemon.rules import Condition, Output, Rules
from suitemon.drivers.radiation import UNIT, AreaRadiation, ThresholdSet, patient_dose_rate, rules_for

log = structlog.get_logger("suitemon.rules.radiation")
DAILY_DOSE = "radiation.daily_dose"


class RadiationRules(Rules):
    def __init__(self, device_id: str, cfg: Any, ctx: Any):
        super().__init__(device_id, cfg, ctx)
        rc = rules_for(cfg, ctx.cfg)
        if rc is None:  # check-config refuses this; a direct caller gets a clear error
            raise ValueError(f"{device_id}: no radiation thresholds for area {cfg.location!r}")
        self.rc: AreaRadiation = rc
        self.area = cfg.location
        self.label = cfg.name or device_id
        self.warning = LevelTracker()
        self.alarm = LevelTracker()
        self.zero = ZeroWatch(rc.zero_fault_s)
        self.rise = RiseDetector(rc.rise) if rc.rise.enabled else None
        try:
            tz = ZoneInfo(ctx.cfg.site.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            log.error("unknown site timezone; daily dose uses UTC", timezone=ctx.cfg.site.timezone)
            tz = ZoneInfo("UTC")
        self.dose = DailyDose(tz, max_gap_s=cfg.stale_after)
        self.zero_fault = False
        self.over_range = False
        self.fault = False

    # -- occupancy (core service; read through the facts so nothing is imported) ----
    def occupancy(self) -> dict[str, Any] | None:
        if self.area is None:
            return None
        occ = self.ctx.facts.get("occupancy", self.area)
        return occ if isinstance(occ, dict) else None

    def occupied(self) -> bool:
        occ = self.occupancy()
        return bool(occ and occ.get("occupied"))

    def thresholds(self) -> tuple[str, ThresholdSet]:
        if self.rc.occupied is not None and self.occupied():
            return "occupied", self.rc.occupied
        return "normal", self.rc.normal

    def explains(self, step_at: float, level: float) -> str | None:
        """Why the occupancy of this area accounts for a step to ``level`` (None: it does not).

        Only up to what the patient can cause: background + TG-108 rate of the patient's
        activity, decayed since injection, at the closest distance a patient can be to the
        detector. A patient arriving does not explain more than that, and a patient of unknown
        activity is bounded by ``rise.assumed_activity_mbq``: a spill in an occupied room is
        still a spill (issue 14, item 12)."""
        occ = self.occupancy()
        if not occ or not occ.get("occupied"):
            return None
        rule = self.rise.rule if self.rise else None
        distance = rule.patient_min_distance_m if rule else 0.5
        activity = occ.get("activity_mbq")
        known = isinstance(activity, (int, float)) and not isinstance(activity, bool)
        if not known:
            activity = rule.assumed_activity_mbq if rule else 0.0
        try:
            t0 = parse_iso(occ.get("administered_at") or occ["since"])
        except (KeyError, TypeError, ValueError):
            t0 = step_at
        bound = self.rc.background_usv_h + patient_dose_rate(float(activity), step_at - t0, distance)
        if level > bound:
            log.warning(
                "rise beyond what the patient can cause",
                device=self.device_id,
                level_usv_h=round(level, 3),
                bound_usv_h=round(bound, 3),
                activity_mbq=activity,
                activity_known=known,
            )
            return None
        try:
            since = parse_iso(occ["since"])
        except (KeyError, TypeError, ValueError):
            since = None
        who = (
            f"a {activity:g} MBq patient"
            if known
            else f"a patient of unknown activity (assumed {activity:g} MBq)"
        )
        if since is not None and rule is not None and since >= step_at - rule.occupancy_grace_s:
            return f"patient arrived at {occ['since']}; within the {bound:.1f} uSv/h {who} can cause"
        return f"within the {bound:.1f} uSv/h {who} can cause"

    # -- readings ------------------------------------------------------------
    def on_reading(self, reading) -> Output:
        v, t = reading.values, reading.at
        rate = v.get("dose_rate_usv_h")
        rate = float(rate) if isinstance(rate, (int, float)) else None
        self.fault = bool(v.get("detector_fault")) or rate is None
        limit = self.rc.range_max_usv_h
        self.over_range = bool(v.get("over_range")) or (
            rate is not None and limit is not None and rate >= limit
        )
        self.zero_fault = self.zero.update(t, rate == 0.0)
        out = [
            self._over_range_condition(rate),
            self._fault_condition(v),
            self._zero_condition(),
            *self._instrument_conditions(v),
        ]
        usable = not self.fault and not self.zero.zero
        if usable:
            assert rate is not None
            level_value = float("inf") if self.over_range else rate
            name, ts = self.thresholds()
            for tracker, which, level in (
                (self.warning, "warning", ts.warning_usv_h),
                (self.alarm, "alarm", ts.alarm_usv_h),
            ):
                was = tracker.active
                now = tracker.update(t, level_value, level, ts.band(level), self.rc.alarm_delay_s)
                if now and not was:
                    tracker.raised_value = rate
                out.append(self._level_condition(tracker, which, level, name))
            if self.rise is not None:
                self.rise.update(t, rate, self.explains)
                out.append(self._spill_condition())
        # A held level (fault, zero) emits nothing: the engine keeps the alarm as it was.
        closed = self.dose.previous
        self.dose.add(t, rate if usable else None, self.over_range)
        if self.dose.previous is not closed and self.dose.previous is not None:
            # A day ended: journal its dose, so reports (suitemon report) have it from the journal alone.
            self.ctx.recorder.record(
                DAILY_DOSE,
                {"device": self.device_id, "area": self.area, **self.dose.previous},
                actor=self.device_id,
            )
        return out

    # -- conditions ------------------------------------------------------------
    def _cond(
        self,
        what: str,
        present: bool,
        priority: str,
        kind: str,
        message: str,
        details: dict | None = None,
        latching: bool = False,
    ) -> Condition:
        return Condition(
            alarm_id=f"{self.device_id}.{what}",
            type=f"radiation.{what}",
            present=present,
            priority=priority,
            kind=kind,
            source=self.device_id,
            location=self.area,
            message=message,
            latching=latching,
            details=details or {},
        )

    def _where(self) -> str:
        area = self.ctx.cfg.areas.get(self.area) if self.area else None
        return area.name if area is not None else self.label

    def _level_condition(self, tracker: LevelTracker, which: str, level: float, set_name: str) -> Condition:
        occupied = " (occupied)" if set_name == "occupied" else ""
        return self._cond(
            f"rate_{which}",
            tracker.active,
            "high" if which == "alarm" else "medium",
            "clinical",
            f"{self._where()}: dose rate above the {which} level of {level:g} {UNIT}{occupied}",
            {
                "level_usv_h": level,
                "threshold_set": set_name,
                "rate_at_raise_usv_h": tracker.raised_value,
                "raised_at": iso(tracker.raised_at) if tracker.raised_at else None,
            }
            if tracker.active
            else None,
        )

    def _spill_condition(self) -> Condition:
        s = self.rise.spill if self.rise else None
        if s is None:
            return self._cond("spill", False, "high", "clinical", "")
        return self._cond(
            "spill",
            True,
            "high",
            "clinical",
            f"{self._where()}: dose rate stepped from {s.baseline:.2f} to {s.level:.2f} {UNIT} with no patient "
            f"arriving: suspected spill or unshielded source. Check and decontaminate before resetting.",
            {
                "baseline_usv_h": round(s.baseline, 4),
                "level_usv_h": round(s.level, 4),
                "step_at": iso(s.step_at),
            },
            latching=True,
        )

    def _instrument_conditions(self, v) -> Output:
        """The instrument's own alarm outputs are alarms, not display: they are its independent
        judgement (its own setpoints), and they hold even when the dose-rate value is unusable."""
        occupied = " (area occupied)" if self.occupied() else ""
        for key, priority, what in (
            ("instrument_high_alarm", "high", "HIGH ALARM"),
            ("instrument_low_alarm", "medium", "low alarm"),
        ):
            on = bool(v.get(key))
            yield self._cond(
                key,
                on,
                priority,
                "clinical",
                f"{self._where()}: monitor {self.label} signals its own {what}{occupied}: check the area"
                if on
                else "",
                {"dose_rate_usv_h": v.get("dose_rate_usv_h")} if on else None,
            )

    def _over_range_condition(self, rate: float | None) -> Condition:
        return self._cond(
            "over_range",
            self.over_range,
            "high",
            "technical",
            f"{self._where()}: monitor {self.label} is over range; the true dose rate is higher than shown"
            if self.over_range
            else "",
        )

    def _fault_condition(self, v) -> Condition:
        why = v.get("fault_reason") or ("no dose-rate value" if v.get("dose_rate_usv_h") is None else "")
        return self._cond(
            "detector_fault",
            self.fault,
            "high",
            "technical",
            f"{self._where()}: monitor {self.label} reports a detector fault ({why}); "
            f"the dose rate is NOT being measured"
            if self.fault
            else "",
        )

    def _zero_condition(self) -> Condition:
        return self._cond(
            "zero_reading",
            self.zero_fault,
            "medium",
            "technical",
            f"{self._where()}: monitor {self.label} has read exactly zero for over {self.rc.zero_fault_s:g} s: "
            f"detector or HV failure suspected, not 'all clear'"
            if self.zero_fault
            else "",
        )

    def comm_lost(self, present: bool, default: Condition) -> Output:
        return (
            replace(
                default,
                message=f"{self._where()}: radiation monitor {self.label} not communicating; "
                f"the dose rate is NOT being monitored",
            ),
        )

    # -- state -----------------------------------------------------------------
    def level(self, reading) -> str:
        runner = self.ctx.runners.get(self.device_id)
        if reading is None or (runner is not None and runner.stale()):
            return "unknown"
        if self.fault:
            return "fault"
        if self.over_range:
            return "over_range"
        if self.zero.zero:
            return "suspect"
        if self.alarm.active:
            return "alarm"
        if self.warning.active:
            return "warning"
        return "normal"

    def state(self, reading) -> dict[str, Any]:
        name, ts = self.thresholds()
        rate = reading.values.get("dose_rate_usv_h") if reading is not None else None
        return {
            "unit": UNIT,
            "area": self.area,
            "dose_rate_usv_h": None if self.fault else rate,
            "level": self.level(reading),
            "occupied": self.occupied() if self.area else None,
            "thresholds": {
                "set": name,
                "warning_usv_h": ts.warning_usv_h,
                "alarm_usv_h": ts.alarm_usv_h,
                "warning_clear_usv_h": round(ts.warning_usv_h - ts.band(ts.warning_usv_h), 6),
                "alarm_clear_usv_h": round(ts.alarm_usv_h - ts.band(ts.alarm_usv_h), 6),
            },
            "spill_suspected": bool(self.rise and self.rise.spill),
            "dose_today": self.dose.summary(),
            "dose_yesterday": self.dose.previous,
        }
