"""When to start the sequence, when to abort it, and whether time is running out.

Pure functions of the UPS ``power`` fact (set by ``daemon/ups/rules.py``) and a
clock, so the debounce that keeps a blip or a self-test from starting a shutdown is
tested without any wire.
"""

from __future__ import annotations

from typing import Any

from suitemon.daemon.shutdown.config import Triggers


def estimated_runtime(power: dict[str, Any] | None, now_mono: float) -> float | None:
    """Seconds of battery left: the UPS's figure, or while it cannot be heard, its last
    figure less the time since (at a steady load the runtime falls a second a second)."""
    if not power or power.get("runtime_s") is None:
        return None
    runtime = float(power["runtime_s"])
    if power.get("comm") != "ok" and power.get("last_ok_mono") is not None:
        runtime -= max(0.0, now_mono - power["last_ok_mono"])
    return runtime


def mains_ok(power: dict[str, Any] | None) -> bool:
    return bool(power) and power.get("comm") == "ok" and bool(power.get("mains_ok"))


class TriggerWatch:
    """Debounced trigger conditions: each must hold continuously for its time to fire."""

    def __init__(self, cfg: Triggers):
        self.cfg = cfg
        self.since: dict[str, float] = {}

    def reset(self) -> None:
        self.since.clear()

    def conditions(self, p: dict[str, Any]) -> list[tuple[str, bool, float, str]]:
        """(name, active, hold time, description) in the order they are reported."""
        c = self.cfg
        ok = p.get("comm") == "ok"
        # The fact already leaves a battery test (self-test, calibration) with mains good out of
        # on_battery and shutdown_imminent: such a test arms no trigger (NUT: OB+LB while CAL is not
        # critical). A real outage during the test is on_battery like any other.
        on_batt = bool(p.get("on_battery"))
        runtime, charge = p.get("runtime_s"), p.get("charge_pct")
        out = []
        if c.shutdown_imminent:
            out.append(
                (
                    "shutdown_imminent",
                    ok and bool(p.get("shutdown_imminent")),
                    c.debounce_s,
                    "the UPS signals shutdown imminent",
                )
            )
        if c.runtime_below_s is not False:
            out.append(
                (
                    "runtime_low",
                    ok and on_batt and runtime is not None and runtime <= c.runtime_below_s,
                    c.debounce_s,
                    f"runtime {runtime} s <= {c.runtime_below_s:g} s on battery",
                )
            )
        if c.charge_below_pct is not False:
            out.append(
                (
                    "charge_low",
                    ok and on_batt and charge is not None and charge <= c.charge_below_pct,
                    c.debounce_s,
                    f"charge {charge} % <= {c.charge_below_pct:g} % on battery",
                )
            )
        if c.comm_lost_on_battery:
            # NUT's upsmon assumes a UPS last seen calibrating and now silent is dead: so do we.
            out.append(
                (
                    "comm_lost_on_battery",
                    p.get("comm") == "lost" and (on_batt or bool(p.get("battery_test"))),
                    c.debounce_s,
                    "UPS not answering while on battery",
                )
            )
        if c.on_battery_s is not False:
            # Kept through a short comm loss: the last reading said on battery.
            out.append(("on_battery", on_batt, c.on_battery_s, f"on battery for {c.on_battery_s:g} s"))
        return out

    def update(self, p: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
        """Feed the latest fact; return the trigger that fired, if any."""
        if p is None:
            return None
        fired = None
        for name, active, hold, text in self.conditions(p):
            if not active:
                self.since.pop(name, None)
                continue
            t0 = self.since.setdefault(name, now)
            if fired is None and now - t0 >= hold:
                fired = {
                    "name": name,
                    "detail": text,
                    "held_s": round(now - t0, 2),
                    "power": True,
                    "runtime_s": p.get("runtime_s"),
                    "charge_pct": p.get("charge_pct"),
                }
        return fired
