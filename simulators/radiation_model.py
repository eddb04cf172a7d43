"""The physics behind the simulated area monitors: background, patients, spills, a detector.

Dose rate in an area = background + each injected patient's 0.092 uSv m^2/(MBq h) x A(t)/d^2
(A decaying with the F-18 half-life) + any spill. The detector counts photons: a reading is
a Poisson count over the integration time divided back into a rate, so background
(~0.1 uSv/h) is noisy and high rates are steady, as on a real monitor. A failed detector
reads exactly zero or raises its fault flag; above its range it saturates and flags over-range.

Simulator options (the device's ``sim`` table): ``background_usv_h`` (0.1),
``sensitivity_cps_per_usv_h`` (50), ``integration_s`` (2), ``range_max_usv_h`` (10000),
``high_alarm_usv_h`` (20) and ``low_alarm_usv_h`` (5) for the instrument's own alarm
outputs, ``counting_noise`` (true), ``seed``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suitemon.drivers.radiation import patient_dose_rate

FAILURE_MODES = ("zero", "fault")


@dataclass
class Patient:
    activity_mbq: float
    measured_at: float  # wall time the activity refers to (injection)
    distance_m: float


@dataclass(frozen=True)
class Sample:
    rate_usv_h: float  # what the instrument shows (saturated at its range)
    over_range: bool
    fault: bool
    high_alarm: bool
    low_alarm: bool


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam < 30:  # Knuth: exact and cheap for small means
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


class AreaModel:
    def __init__(self, options: dict[str, Any] | None = None, clock: Callable[[], float] = time.time):
        o = options or {}
        self.clock = clock
        self.background = float(o.get("background_usv_h", 0.1))
        self.sensitivity = float(o.get("sensitivity_cps_per_usv_h", 50.0))
        self.integration_s = float(o.get("integration_s", 2.0))
        self.range_max = float(o.get("range_max_usv_h", 10000.0))
        self.high_alarm = float(o.get("high_alarm_usv_h", 20.0))
        self.low_alarm = float(o.get("low_alarm_usv_h", 5.0))
        self.counting_noise = bool(o.get("counting_noise", True))
        self.rng = random.Random(o.get("seed"))
        self.patients: list[Patient] = []
        self.spill_usv_h = 0.0
        self.failure: str | None = None
        self.fixed: float | None = None
        self.flap: tuple[float, float] | None = None
        self._flip = False
        self.dose_usv = 0.0
        self._dose_t = clock()

    def true_rate(self, t: float) -> float:
        patients = sum(
            patient_dose_rate(p.activity_mbq, t - p.measured_at, p.distance_m) for p in self.patients
        )
        return self.background + patients + self.spill_usv_h

    def _accumulate(self, t: float) -> None:
        if t > self._dose_t and self.failure is None:
            self.dose_usv += self.true_rate(t) * (t - self._dose_t) / 3600.0
        self._dose_t = t

    def sample(self, t: float | None = None) -> Sample:
        t = self.clock() if t is None else t
        self._accumulate(t)
        if self.flap is not None:
            self._flip = not self._flip
            rate = self.flap[1] if self._flip else self.flap[0]
        elif self.fixed is not None:
            rate = self.fixed
        else:
            rate = self.true_rate(t)
            if self.counting_noise:
                per_rate = self.sensitivity * self.integration_s
                rate = poisson(self.rng, rate * per_rate) / per_rate
        fault = self.failure == "fault"
        if self.failure is not None:
            rate = 0.0  # a dead detector or HV supply counts nothing
        over = rate >= self.range_max
        shown = min(rate, self.range_max)
        return Sample(
            shown, over, fault, not fault and rate >= self.high_alarm, not fault and rate >= self.low_alarm
        )

    # -- control actions (the simulators put these in their action tables) -------------
    def arrive(
        self, activity_mbq: float = 350.0, distance_m: float = 1.0, minutes_since_injection: float = 0.0
    ) -> dict[str, Any]:
        if activity_mbq <= 0 or distance_m <= 0:
            raise ValueError("activity_mbq and distance_m must be positive")
        now = self.clock()
        self.patients.append(
            Patient(float(activity_mbq), now - 60.0 * minutes_since_injection, float(distance_m))
        )
        return self.describe()

    def leave(self) -> dict[str, Any]:
        self.patients.clear()
        return self.describe()

    def spill(self, usv_h: float = 10.0) -> dict[str, Any]:
        self.spill_usv_h += float(usv_h)
        return self.describe()

    def clean(self) -> dict[str, Any]:
        self.spill_usv_h = 0.0
        return self.describe()

    def fail(self, mode: str = "zero") -> dict[str, Any]:
        if mode not in FAILURE_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAILURE_MODES)}")
        self.failure = mode
        return self.describe()

    def repair(self) -> dict[str, Any]:
        self.failure = None
        return self.describe()

    def fix(self, usv_h: float | None = None) -> dict[str, Any]:
        """Show exactly this rate (no physics, no noise); None returns to the model."""
        self.fixed = None if usv_h is None else float(usv_h)
        self.flap = None
        return self.describe()

    def set_flap(self, low: float | None = None, high: float | None = None) -> dict[str, Any]:
        """Alternate between two rates on every reading (threshold chatter tests)."""
        self.flap = None if low is None or high is None else (float(low), float(high))
        return self.describe()

    def set_background(self, usv_h: float = 0.1) -> dict[str, Any]:
        self.background = float(usv_h)
        return self.describe()

    def set_counting_noise(self, on: bool = True) -> dict[str, Any]:
        self.counting_noise = bool(on)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "true_rate_usv_h": round(self.true_rate(now), 4),
            "background_usv_h": self.background,
            "patients": [
                {
                    "activity_mbq": p.activity_mbq,
                    "distance_m": p.distance_m,
                    "rate_usv_h": round(
                        patient_dose_rate(p.activity_mbq, now - p.measured_at, p.distance_m), 4
                    ),
                }
                for p in self.patients
            ],
            "spill_usv_h": self.spill_usv_h,
            "failure": self.failure,
            "fixed": self.fixed,
            "flap": self.flap,
            "dose_usv": round(self.dose_usv, 6),
        }

    def actions(self) -> dict[str, Callable[..., Any]]:
        return {
            "arrive": self.arrive,
            "leave": self.leave,
            "spill": self.spill,
            "clean": self.clean,
            "fail": self.fail,
            "repair": self.repair,
            "fix": self.fix,
            "flap": self.set_flap,
            "background": self.set_background,
            "counting_noise": self.set_counting_noise,
            "model": self.describe,
        }
