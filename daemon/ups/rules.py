"""UPS readings -> alarms, and the ``power`` fact the shutdown sequencer watches.

Alarm ids are ``<device>.<cause>``. Messages and details stay the same while a
cause lasts (runtime and charge live in the device state), so a UPS on battery
does not write an ``alarm.updated`` event every second.

A battery test (a self-test, status bit "test", or a runtime calibration, NUT's
"CAL") puts the UPS on battery with mains present and, for a calibration, drains
the battery on purpose until it signals low battery. That is not a power failure:
it is reported as its own LOW alarm, starts no shutdown and arms no runtime, charge
or shutdown-imminent trigger while mains is good. Mains is judged from the UPS's
input-bad and power-failure bits and from its input voltage, so a real outage during
a test still counts. Communication lost while the last reading said "on battery" (or
"testing", as NUT's upsmon does for CAL) is sharpened: the UPS may be about to drop the
load and nobody can see it; the fact carries it to the sequencer as a trigger.

The rules read only the normalised reading names of ``drivers/ups_model.py``, which every
UPS kind produces (APC Modbus, NUT, SNMP: docs/ups.md), so they are handled alike.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from suitemon.daemon.rules import Condition, Output, Rules

POWER_FACT = "power"
TESTS = {"calibration": "runtime calibration", "self_test": "battery self-test"}


def battery_test(v: dict[str, Any]) -> str | None:
    """Which battery test the UPS reports running: "calibration", "self_test" or None."""
    if v.get("calibrating"):
        return "calibration"
    if v.get("self_test"):
        return "self_test"
    return None


def mains_lost(v: dict[str, Any], min_v: float | None = None) -> bool:
    """Mains known bad: the UPS says so (input bad, power failure) or its input voltage does."""
    if v.get("input_bad") or v.get("power_failure"):
        return True
    volts = v.get("input_v")
    return min_v is not None and volts is not None and volts < min_v


def testing_on_mains(v: dict[str, Any], min_v: float | None = None) -> bool:
    """On battery only because of a battery test, with mains present."""
    return bool(v.get("on_battery")) and battery_test(v) is not None and not mains_lost(v, min_v)


def really_on_battery(v: dict[str, Any], min_v: float | None = None) -> bool:
    """On battery because mains failed, not because the UPS is testing its battery."""
    return bool(v.get("on_battery")) and not testing_on_mains(v, min_v)


def power_fact(
    v: dict[str, Any] | None,
    *,
    comm: str,
    at: float,
    mono: float,
    device: str,
    last_ok: float | None,
    mains_min_v: float | None = None,
) -> dict[str, Any]:
    v = v or {}
    test_on_mains = testing_on_mains(v, mains_min_v)
    return {
        "device": device,
        "comm": comm,
        "on_battery": really_on_battery(v, mains_min_v),
        "battery_test": battery_test(v) if v.get("on_battery") else None,
        "self_test": bool(v.get("self_test")),
        "calibrating": bool(v.get("calibrating")),
        "input_bad": bool(v.get("input_bad")),
        "mains_ok": bool(v) and not mains_lost(v, mains_min_v) and (not v.get("on_battery") or test_on_mains),
        "output_off": bool(v.get("output_off")),
        # NUT: OB+LB while CAL is not critical; a low battery during a test on mains is the test's doing.
        "shutdown_imminent": bool(v.get("shutdown_imminent")) and not test_on_mains,
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
        self.driver: Any = None

    def bind(self, driver: Any) -> None:
        self.driver = driver

    @property
    def name(self) -> str:
        return self.cfg.name or self.device_id

    @property
    def mains_min_v(self) -> float | None:
        return getattr(self.cfg, "mains_min_v", None)

    def _cond(
        self, cause: str, present: bool, priority: str, kind: str, message: str, **details: Any
    ) -> Condition:
        return Condition(
            alarm_id=f"{self.device_id}.{cause}",
            type=f"ups.{cause}",
            present=bool(present),
            priority=priority,
            kind=kind,
            source=self.device_id,
            location=self.cfg.location,
            message=message,
            details=details,
        )

    def _low_battery(self, v: dict[str, Any], on_batt: bool) -> tuple[bool, str]:
        # A battery test with mains present drains the battery on purpose: its low battery is no alarm.
        if v.get("shutdown_imminent") and not testing_on_mains(v, self.mains_min_v):
            return True, "the UPS signals shutdown imminent"
        if not on_batt:
            return False, ""
        runtime, charge = v.get("runtime_s"), v.get("charge_pct")
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
        self.ctx.facts.set(
            POWER_FACT,
            self.device_id,
            power_fact(
                v,
                comm="ok",
                at=reading.at,
                mono=reading.mono,
                device=self.device_id,
                last_ok=reading.mono,
                mains_min_v=self.mains_min_v,
            ),
        )
        on_batt = really_on_battery(v, self.mains_min_v)
        test = battery_test(v) if testing_on_mains(v, self.mains_min_v) else None
        self.low, why = self._low_battery(v, on_batt)
        n = self.name
        # Mains still lost once the UPS has switched its output off (after a shutdown, or an empty
        # battery): the cause has not ended, so the alarm stays, with a message that says so.
        dark = bool(v.get("output_off") and v.get("input_bad"))
        return [
            self._cond(
                "on_battery",
                on_batt or dark,
                "high",
                "technical",
                f"{n}: mains power lost; the UPS output is OFF, the suite has no power"
                if dark
                else f"{n}: mains power lost, the suite is running on battery",
            ),
            self._cond(
                "battery_test",
                test is not None,
                "low",
                "technical",
                f"{n}: {TESTS[test]} in progress: on battery with mains present; no shutdown "
                "(a mains failure during it still counts)"
                if test
                else f"{n}: battery test in progress",
                test=test,
            ),
            self._cond(
                "low_battery",
                self.low,
                "high",
                "technical",
                f"{n}: battery low ({why}); the UPS will drop the load soon"
                if self.low
                else f"{n}: battery low",
                reason=why or None,
            ),
            self._cond(
                "battery_replace",
                v.get("battery_needs_replacement"),
                "low",
                "maintenance",
                f"{n}: battery needs replacement; runtime in an outage will be short",
            ),
            self._cond(
                "battery_disconnected",
                v.get("battery_disconnected"),
                "high",
                "technical",
                f"{n}: battery disconnected; there is no runtime if mains fails",
            ),
            self._cond(
                "overload",
                v.get("overload"),
                "medium",
                "technical",
                f"{n}: output overload; the UPS may drop the load",
            ),
            self._cond(
                "over_temperature", v.get("over_temperature"), "medium", "technical", f"{n}: over temperature"
            ),
            self._cond(
                "fault",
                v.get("fault"),
                "high",
                "technical",
                f"{n}: UPS fault; the suite may not be protected",
            ),
            self._untrusted(None),
        ]

    def _untrusted(self, problem: str | None) -> Condition:
        return self._cond(
            "untrusted",
            problem is not None,
            "high",
            "technical",
            f"{self.name}: UPS values NOT trusted ({problem}); power state unknown, "
            "no safe shutdown can be triggered by it"
            if problem
            else f"{self.name}: UPS values not trusted",
            problem=problem,
        )

    def state(self, reading) -> dict[str, Any]:
        if reading is None:
            return {"power": "unknown"}
        v = reading.values
        if v.get("output_off"):
            power = "output_off"
        elif really_on_battery(v, self.mains_min_v):
            power = "battery"
        elif testing_on_mains(v, self.mains_min_v):
            power = battery_test(v)
        else:
            power = "mains"
        return {"power": power}

    def comm_lost(self, present: bool, default: Condition) -> Output:
        last = self.last
        # On battery for any reason, a battery test included: NUT's upsmon assumes a UPS last seen
        # calibrating that stops answering is dead.
        on_batt = bool(last) and bool(last.get("on_battery"))
        if present:
            self.ctx.facts.set(
                POWER_FACT,
                self.device_id,
                power_fact(
                    last,
                    comm="lost",
                    at=time.time(),
                    mono=time.monotonic(),
                    device=self.device_id,
                    last_ok=self.last_ok_mono,
                    mains_min_v=self.mains_min_v,
                ),
            )
        if present and on_batt:
            default = replace(
                default,
                priority="high",
                message=f"{self.name}: communication lost while on battery: treated as critical "
                "(the UPS may drop the load unseen; this counts as a shutdown trigger)",
                details={
                    **default.details,
                    "on_battery": True,
                    "critical": True,
                    "last_runtime_s": last.get("runtime_s") if last else None,
                },
            )
        problem = getattr(self.driver, "trust_problem", None) if present else None
        return (default, self._untrusted(problem))
