"""The pieces of the area-radiation rules that hold state over time, free of I/O.

Every method takes the reading's own timestamp: delays, windows and day boundaries are
measured on the readings, never with wall-clock sleeps, so a slow loop cannot shorten an
alarm delay and tests can drive them with synthetic times (tests/test_radiation_logic.py).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from datetime import time as dtime
from typing import Any

from suitemon.daemon.alarms import iso
from suitemon.drivers.radiation import RiseRule


class LevelTracker:
    """One dose-rate level with hysteresis and an alarm-condition delay.

    The condition starts when the rate goes above the level and must stay above
    ``level - band`` for ``delay_s`` of reading time to become active; it ends when the
    rate falls to ``level - band`` or below. A rate wandering inside the band therefore
    neither raises a new alarm nor clears a raised one (no chatter). A pending condition
    survives dips that stay inside the band: the safer reading of an ambiguous signal.
    """

    def __init__(self):
        self.active = False
        self.pending_since: float | None = None
        self.raised_at: float | None = None
        self.raised_value: float | None = None

    def update(self, t: float, value: float, level: float, band: float, delay_s: float) -> bool:
        if self.active:
            if value <= level - band:
                self.active = False
                self.pending_since = None
            return self.active
        if self.pending_since is None:
            if value > level:
                self.pending_since = t
        elif value <= level - band:
            self.pending_since = None
        if self.pending_since is not None and t - self.pending_since >= delay_s:
            self.active = True
            self.raised_at, self.raised_value = t, value
        return self.active


class ZeroWatch:
    """A reading of exactly zero for too long: a dead detector or HV supply, never 'all clear'."""

    def __init__(self, limit_s: float):
        self.limit_s = limit_s
        self.since: float | None = None

    def update(self, t: float, is_zero: bool) -> bool:
        if not is_zero:
            self.since = None
            return False
        if self.since is None:
            self.since = t
        return t - self.since >= self.limit_s

    @property
    def zero(self) -> bool:
        return self.since is not None


# explains(step_started_at, new_level) -> why occupancy explains the step, or None.
Explainer = Callable[[float, float], "str | None"]


@dataclass
class Spill:
    baseline: float
    level: float
    step_at: float


class RiseDetector:
    """A step rise above the recent baseline that occupancy does not explain: a suspected spill.

    Baseline: the median of the readings in the last ``window_s`` before the step. A step
    is ``rise_usv_h`` above it and ``factor`` times it; it must hold for ``confirm_s``
    (falling back below half the step cancels it). Once confirmed, ``explains`` is asked
    whether a patient accounts for it; if so the new level becomes the baseline. A
    suspected spill stays present until the rate falls back to within half a step of the
    old baseline (the alarm itself latches until someone resets it).
    """

    def __init__(self, rule: RiseRule):
        self.rule = rule
        self.history: deque[tuple[float, float]] = deque()
        self.pending: tuple[float, float] | None = None  # (step start, baseline)
        self.spill: Spill | None = None
        self.last_explained: str | None = None
        self.explained = 0

    def baseline(self, t: float) -> float | None:
        pts = [v for ti, v in self.history if t - self.rule.window_s <= ti < t]
        if len(pts) < self.rule.min_baseline_readings:
            return None
        return statistics.median(pts)

    def update(self, t: float, value: float, explains: Explainer) -> bool:
        r = self.rule
        base = self.baseline(t) if self.pending is None and self.spill is None else None
        self.history.append((t, value))
        while self.history and self.history[0][0] < t - r.window_s - r.confirm_s:
            self.history.popleft()
        if self.spill is not None:
            if value < self.spill.baseline + r.rise_usv_h / 2:
                self.spill = None
            return self.spill is not None
        if self.pending is None:
            if base is not None and value - base >= r.rise_usv_h and value >= base * r.factor:
                self.pending = (t, base)
        elif value < self.pending[1] + r.rise_usv_h / 2:
            self.pending = None
        if self.pending is not None and t - self.pending[0] >= r.confirm_s:
            step_at, base0 = self.pending
            self.pending = None
            why = explains(step_at, value)
            if why is not None:
                self.last_explained = why
                self.explained += 1
                self.history = deque([(t, value)])  # the patient's level is the new baseline
            else:
                self.spill = Spill(baseline=base0, level=value, step_at=step_at)
        return self.spill is not None


class DailyDose:
    """Dose integrated from the dose rate (trapezoids), per local calendar day.

    Intervals longer than ``max_gap_s`` (comm loss, stale data) and readings without a
    trustworthy rate are not integrated: the day is then marked incomplete rather than
    filled in. An over-range reading integrates the displayed (saturated) value, so the
    day's figure becomes a lower bound.
    """

    def __init__(self, tz: tzinfo, max_gap_s: float):
        self.tz = tz
        self.max_gap_s = max_gap_s
        self.day: date | None = None
        self.usv = 0.0
        self.since: float | None = None
        self.complete = True
        self.lower_bound = False
        self.last: tuple[float, float] | None = None
        self.previous: dict[str, Any] | None = None

    def _day_of(self, t: float) -> date:
        return datetime.fromtimestamp(t, self.tz).date()

    def _midnight(self, d: date) -> float:
        return datetime.combine(d, dtime(0), tzinfo=self.tz).timestamp()

    def _roll(self, day: date, at: float, complete: bool) -> None:
        if self.day is not None:
            self.previous = self.summary()
        self.day, self.usv, self.since, self.complete, self.lower_bound = day, 0.0, at, complete, False

    def _integrate(self, t0: float, t1: float, r0: float, r1: float) -> None:
        self.usv += (r0 + r1) / 2.0 * (t1 - t0) / 3600.0

    def add(self, t: float, rate: float | None, over_range: bool = False) -> None:
        day = self._day_of(t)
        if self.day is None:
            self._roll(day, t, True)
        if rate is not None and self.last is not None:
            t0, r0 = self.last
            dt = t - t0
            if 0 < dt <= self.max_gap_s:
                if self._day_of(t0) != day:
                    mid = self._midnight(day)
                    r_mid = r0 + (rate - r0) * (mid - t0) / dt
                    self._integrate(t0, mid, r0, r_mid)
                    self._roll(day, mid, True)
                    self._integrate(mid, t, r_mid, rate)
                else:
                    self._integrate(t0, t, r0, rate)
            elif dt > self.max_gap_s:
                self.complete = False
        if day != self.day:  # a new day began during a gap: its start is not covered
            self._roll(day, self._midnight(day), False)
        if rate is None:
            self.complete = False
            self.last = None
        else:
            self.last = (t, rate)
            self.lower_bound = self.lower_bound or over_range

    def summary(self) -> dict[str, Any] | None:
        if self.day is None:
            return None
        return {
            "day": self.day.isoformat(),
            "usv": round(self.usv, 4),
            "since": iso(self.since) if self.since is not None else None,
            "complete": self.complete,
            "lower_bound": self.lower_bound,
        }
