"""Simulator for the generic point device: values drift a little; tests set them exactly."""

from __future__ import annotations

import math
import time

from suitemon.simulators.base import ModbusSimulator


class PointsSimulator(ModbusSimulator):
    default_profile = "generic_io"

    def __init__(self, device_id, cfg):
        super().__init__(device_id, cfg)
        self._t0 = time.monotonic()
        self.drift = bool(self.options.get("drift", True))
        self.set_point(temperature=21.5, humidity=40.0, counter=0, status={"fault": False})
        self.flap: tuple[float, float] | None = None
        self._flip = False
        self.actions["drift"] = self._set_drift
        self.actions["flap"] = self._set_flap

    def _set_flap(self, low: float | None = None, high: float | None = None) -> str:
        """A sensor oscillating across a limit: every answer alternates low/high."""
        self.flap = None if low is None or high is None else (low, high)
        return "flapping" if self.flap else "steady"

    def _set_drift(self, on: bool = True) -> bool:
        self.drift = on
        return on

    def update(self) -> None:
        if self.flap is not None:
            self._flip = not self._flip
            self.set_point(temperature=self.flap[1] if self._flip else self.flap[0])
            return
        if not self.drift:
            return
        t = time.monotonic() - self._t0
        self.set_point(temperature=round(21.5 + 0.5 * math.sin(t / 60), 1), counter=int(t))
