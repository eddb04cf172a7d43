"""UPS readings -> alarms, and the ``power`` fact the shutdown sequencer watches.

Alarm ids are ``<device>.<cause>``. Messages and details stay the same while a
cause lasts (runtime and charge live in the device state), so a UPS on battery
does not write an ``alarm.updated`` event every second.

A self-test puts the UPS on battery with mains present (status bit "test"): that is
not a power failure and raises nothing. Communication lost while the last reading
said "on battery" is sharpened, as NUT does: the UPS may be about to drop the
load and nobody can see it; the fact carries it to the sequencer as a trigger.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from suitemon.daemon.rules import Condition, Output, Rules

POWER_FACT = "power"


def really_on_battery(v: dict[str, Any]) -> bool:
    """On battery because mains failed, not because the UPS is testing itself."""
    if not v.get("on_battery"):
        return False
    return not (v.get("self_test") and not v.get("input_bad"))


def power_fact(v: dict[str, Any] | None, *, comm: str, at: float, mono: float,
               device: str, last_ok: float | None) -> dict[str, Any]:
    v = v or {}
    return {
        "device": device,
        "comm": comm,
        "on_battery": really_on_battery(v),
        "self_test": bool(v.get("self_test")),
        "input_bad": bool(v.get("input_bad")),
        "mains_ok": bool(v) and not v.get("on_battery") and not v.get("input_bad"),
        "output_off": bool(v.get("output_off")),
        "shutdown_imminent": bool(v.get("shutdown_imminent")) and not (v.get("self_test") and not v.get("input_bad")),
        "runtime_s": v.get("runtime_s"),
        "charge_pct": v.get("charge_pct"),
        "outlet_countdown_s": v.get("outlet_countdown_s"),
        "at": at,
        "mono": mono,
        "last_ok_mono": last_ok,
    }


class UpsRules(Rules):
    def __init__(self, device_id, cfg, ctx):
        super().__init__(device_id, cfg, ctx)
        self.last: dict[str, Any] | None = None
        self.last_ok_mono: float | None = None
        self.low = False

    @property
    def name(self) -> str:
        return self.cfg.name or self.device_id

    def _cond(self, cause: str, present: bool, priority: str, kind: str, message: str,
              **details: Any) -> Condition:
        return Condition(alarm_id=f"{self.device_id}.{cause}", type=f"ups.{cause}", present=bool(present),
                         priority=priority, kind=kind, source=self.device_id, location=self.cfg.location,
                         message=message, details=details)

    def _low_battery(self, v: dict[str, Any], on_batt: bool) -> tuple[bool, str]:
        if v.get("shutdown_imminent") and not (v.get("self_test") and not v.get("input_bad")):
            return True, "the UPS signals shutdown imminent"
        runtime, charge = v.get("runtime_s"), v.get("charge_pct")
        if not on_batt:
            return False, ""
        # Hysteresis: once low, a small rise (load dropped) does not clear it.
        margin_s, margin_pct = (60.0, 5.0) if self.low else (0.0, 0.0)
        if runtime is not None and runtime <= self.cfg.low_runtime_s + margin_s:
            return True, f"runtime at or below {self.cfg.low_runtime_s:g} s"
        if charge is not None and charge <= self.cfg.low_charge_pct + margin_pct:
            return True, f"charge at or below {self.cfg.low_charge_pct:g} %"
        return False, ""

    def on_reading(self, reading) -> Output:
        v = dict(reading.values)
        self.last, self.last_ok_mono = v, reading.mono
        self.ctx.facts.set(POWER_FACT, self.device_id, power_fact(
            v, comm="ok", at=reading.at, mono=reading.mono, device=self.device_id, last_ok=reading.mono))
        on_batt = really_on_battery(v)
        self.low, why = self._low_battery(v, on_batt)
        n = self.name
        # Mains still lost once the UPS has switched its output off (after a shutdown, or an empty
        # battery): the cause has not ended, so the alarm stays, with a message that says so.
        dark = bool(v.get("output_off") and v.get("input_bad"))
        return [
            self._cond("on_battery", on_batt or dark, "high", "technical",
                       f"{n}: mains power lost; the UPS output is OFF, the suite has no power" if dark
                       else f"{n}: mains power lost, the suite is running on battery"),
            self._cond("low_battery", self.low, "high", "technical",
                       f"{n}: battery low ({why}); the UPS will drop the load soon" if self.low
                       else f"{n}: battery low", reason=why or None),
            self._cond("battery_replace", v.get("battery_needs_replacement"), "low", "maintenance",
                       f"{n}: battery needs replacement; runtime in an outage will be short"),
            self._cond("battery_disconnected", v.get("battery_disconnected"), "high", "technical",
                       f"{n}: battery disconnected; there is no runtime if mains fails"),
            self._cond("overload", v.get("overload"), "medium", "technical",
                       f"{n}: output overload; the UPS may drop the load"),
            self._cond("over_temperature", v.get("over_temperature"), "medium", "technical",
                       f"{n}: over temperature"),
            self._cond("fault", v.get("fault"), "high", "technical",
                       f"{n}: UPS fault; the suite may not be protected"),
        ]

    def state(self, reading) -> dict[str, Any]:
        if reading is None:
            return {"power": "unknown"}
        v = reading.values
        if v.get("output_off"):
            power = "output_off"
        elif really_on_battery(v):
            power = "battery"
        elif v.get("self_test"):
            power = "self_test"
        else:
            power = "mains"
        return {"power": power}

    def comm_lost(self, present: bool, default: Condition) -> Output:
        last = self.last
        on_batt = bool(last) and really_on_battery(last)
        if present:
            self.ctx.facts.set(POWER_FACT, self.device_id, power_fact(
                last, comm="lost", at=time.time(), mono=time.monotonic(), device=self.device_id,
                last_ok=self.last_ok_mono))
        if present and on_batt:
            default = replace(
                default, priority="high",
                message=f"{self.name}: communication lost while on battery: treated as critical "
                        "(the UPS may drop the load unseen; this counts as a shutdown trigger)",
                details={**default.details, "on_battery": True, "critical": True,
                         "last_runtime_s": last.get("runtime_s") if last else None})
        return (default,)
