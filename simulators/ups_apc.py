"""APC Smart-UPS simulator: a battery model behind the AN176 register map.

The model advances lazily (before every answer and every control action), so its
clock is the wall clock and nothing runs between requests. On battery the charge
falls at a rate set by the load; on mains it recharges. Outlet commands written to
register 1538 (or 1540) start the turn-off countdown shown in register 155; when it
ends the output goes off, and a "shutdown" comes back on once mains is present.

Like the real UPS it refuses a read that splits a multi-register item and a write
that does not cover exactly one item, and it refuses the reserved registers between
items. Outlet groups follow the documented APC behaviour: each has its own off delay
and countdown, and the main group feeds the switched groups (turning it off turns
them off first; NMC 2 User's Guide, "What are Outlet Groups?"). A runtime calibration
(AN-176 register 24 bit 1) runs the load on battery with mains present, as the real
UPS does, until the charge falls to ``calibration_end_pct``; it refuses to start below
a full charge or without mains, and a mains failure during it does not clear the
calibration bit (the worst case: both show at once).

Options (device ``sim`` table): charge_pct, load_pct, full_runtime_s (at 100 % load),
recharge_s, low_runtime_s (its own shutdown-imminent signal), return_delay_s,
shutdown_delay_s, calibration_end_pct, group_load_pct (share of the load on each
switched group, e.g. ``{switched_group_0 = 25}``).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from suitemon.drivers.profile import Profile, decode, encode
from suitemon.simulators.base import ModbusSimulator, RegisterStore, SimError
from suitemon.simulators.modbus_server import ILLEGAL_ADDRESS, ModbusError

NOMINAL_V = 230.0
MAIN = "main_group"
SWITCHED = ("switched_group_0", "switched_group_1", "switched_group_2")


class Group:
    """One outlet group: on or off, a pending command, and whether it returns on mains."""

    def __init__(self, name: str, delay_point: str | None, countdown_point: str | None):
        self.name, self.delay_point, self.countdown_point = name, delay_point, countdown_point
        self.on = True
        self.pending: tuple[str, float] | None = None  # ("shutdown"|"off"|"reboot", due at)
        self.return_on_mains = False
        self.return_at: float | None = None


class ItemStore(RegisterStore):
    """Holding registers with APC's item rules, and an optional byte-swapping link."""

    def __init__(self, profile: Profile, base: RegisterStore):
        super().__init__()
        self.tables, self.writable = base.tables, base.writable
        self.items = {p.address: p.count for p in profile.points if p.table == "holding"}
        self.swap_bytes = False
        self.swap_words = False

    def _splits(self, start: int, end: int) -> bool:
        return any(n > 1 and (a < start < a + n or a < end < a + n) for a, n in self.items.items())

    def read(self, table: str, address: int, count: int) -> list[int]:
        if table == "holding" and self._splits(address, address + count):
            raise ModbusError(ILLEGAL_ADDRESS)
        words = super().read(table, address, count)
        if self.swap_words and table == "holding":
            # A gateway that swaps the two words of every 32-bit item (16-bit items read fine).
            for a, n in self.items.items():
                if n == 2 and address <= a and a + 2 <= address + count:
                    i = a - address
                    words[i], words[i + 1] = words[i + 1], words[i]
        if self.swap_bytes:
            words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
        return words

    def write(self, table: str, address: int, values: list[int]) -> None:
        if table == "holding" and self.items.get(address) != len(values):
            raise ModbusError(ILLEGAL_ADDRESS)
        super().write(table, address, values)


# The battery model's scenario actions, offered alike by every UPS kind's simulator (the NUT and SNMP
# ones drive this model); the Modbus-only actions (swap_bytes/words, set, line_stats) stay here.
MODEL_ACTIONS = (
    "mains_fail",
    "mains_restore",
    "flicker",
    "low_battery",
    "replace_battery",
    "overload",
    "battery_disconnected",
    "state",
    "self_test",
    "calibrate",
    "calibrate_abort",
)


class ApcUpsSimulator(ModbusSimulator):
    default_profile = "apc_smart_ups"

    def __init__(self, device_id: str, cfg: Any):
        super().__init__(device_id, cfg)
        assert self.profile is not None
        # The base laid the registers out; wrap them in the item rules.
        self.store = ItemStore(self.profile, self.store)
        self.unit.store = self.store
        self.store.on_write = self._on_write
        selftest = self.profile.meta.get("selftest", {})
        if selftest:
            self.store.define("holding", selftest["start"], selftest["count"])
        o = self.options
        self.charge = float(o.get("charge_pct", 100.0)) / 100.0
        self.load_pct = float(o.get("load_pct", 40.0))
        self.full_runtime_s = float(o.get("full_runtime_s", 600.0))
        self.recharge_s = float(o.get("recharge_s", 3600.0))
        self.low_runtime_s = float(o.get("low_runtime_s", 120.0))
        self.return_delay_s = float(o.get("return_delay_s", 5.0))
        self.calibration_end = float(o.get("calibration_end_pct", 25.0)) / 100.0
        self.group_load = {str(k): float(v) for k, v in (o.get("group_load_pct") or {}).items()}
        self.battery_temp_c = 25.0
        self.mains = True
        outlet = self.profile.meta.get("outlet", {})
        table = outlet.get("groups") or {
            MAIN: {"delay_point": outlet.get("delay_point"), "countdown_point": outlet.get("countdown_point")}
        }
        self.groups = {
            name: Group(name, g.get("delay_point"), g.get("countdown_point")) for name, g in table.items()
        }
        self.main = self.groups.setdefault(MAIN, Group(MAIN, None, None))
        self.test_until: float | None = None
        self.calibrating = False
        self.calibration_until: float | None = None
        self.mains_back_at: float | None = None
        self.flags = {
            "fault": False,
            "overload": False,
            "over_temperature": False,
            "battery_disconnected": False,
            "battery_needs_replacement": False,
            "low_battery": False,
        }
        self.input_v_available = True
        self.outlet_commands: list[dict[str, Any]] = []
        self.request_times: deque[float] = deque(maxlen=5000)
        self._last = time.monotonic()
        for g in self.groups.values():
            if g.delay_point:
                self._poke(g.delay_point, int(o.get("shutdown_delay_s", 90)))
        for name, value in selftest.get("expect", {}).items():
            self._poke(name, value)
        self.actions.update(
            {
                "mains_fail": self.mains_fail,
                "mains_restore": self.mains_restore,
                "flicker": self.flicker,
                "self_test": self.self_test,
                "calibrate": self.calibrate,
                "calibrate_abort": self.calibrate_abort,
                "low_battery": self._flag_action("low_battery"),
                "replace_battery": self._flag_action("battery_needs_replacement"),
                "battery_disconnected": self._flag_action("battery_disconnected"),
                "overload": self._flag_action("overload"),
                "ups_fault": self._flag_action("fault"),
                "over_temperature": self._flag_action("over_temperature"),
                "swap_bytes": self.set_swap_bytes,
                "swap_words": self.set_swap_words,
                "set": self.set_model,
                "state": self.state,
                "line_stats": self.line_stats,
            }
        )
        self._refresh(self._last)

    # -- the model -----------------------------------------------------------
    @property
    def output_on(self) -> bool:
        return self.main.on

    @property
    def testing(self) -> bool:
        return self.test_until is not None

    @property
    def on_battery(self) -> bool:
        return self.output_on and (not self.mains or self.testing or self.calibrating)

    def present_load(self) -> float:
        """Load now: nothing with the main group off, less the share of switched groups that are off."""
        if not self.output_on:
            return 0.0
        shed = sum(self.group_load.get(n, 0.0) for n, g in self.groups.items() if n != MAIN and not g.on)
        return max(0.0, self.load_pct - shed)

    def full_charge_runtime(self) -> float:
        """Seconds a full battery lasts at the present load."""
        return self.full_runtime_s * 100.0 / max(self.present_load(), 5.0)

    def runtime(self) -> float:
        return 0.0 if self.flags["battery_disconnected"] else self.charge * self.full_charge_runtime()

    def _integrate(self, t: float) -> None:
        dt = max(0.0, t - self._last)
        if self.on_battery:
            self.charge = max(0.0, self.charge - dt / self.full_charge_runtime())
        elif self.mains:
            self.charge = min(1.0, self.charge + dt / self.recharge_s)
        self._last = t

    def _events(self) -> list[tuple[float, Callable[[float], None]]]:
        ev: list[tuple[float, Callable[[float], None]]] = []
        if self.mains_back_at is not None:
            ev.append((self.mains_back_at, self._mains_back))
        if self.test_until is not None:
            ev.append((self.test_until, self._test_done))
        if self.calibration_until is not None:
            ev.append((self.calibration_until, self._calibration_done))
        for g in self.groups.values():
            if g.pending is not None:
                ev.append((g.pending[1], lambda t, g=g: self._pending_due(g, t)))
            if g.return_at is not None:
                ev.append((g.return_at, lambda t, g=g: self._output_back(g, t)))
        if self.on_battery and self.charge > 0:
            ev.append((self._last + self.charge * self.full_charge_runtime(), self._battery_empty))
            if self.calibrating and self.charge > self.calibration_end:
                ev.append(
                    (
                        self._last + (self.charge - self.calibration_end) * self.full_charge_runtime(),
                        self._calibration_done,
                    )
                )
        return ev

    def _advance(self) -> float:
        now = time.monotonic()
        for _ in range(40):  # a handful of events at most between two requests
            due = [e for e in self._events() if e[0] <= now]
            if not due:
                break
            t, fn = min(due, key=lambda e: e[0])
            self._integrate(t)
            fn(t)
        self._integrate(now)
        return now

    def _mains_back(self, t: float) -> None:
        self.mains, self.mains_back_at = True, None
        for g in self.groups.values():
            if g.return_on_mains and not g.on:
                g.return_at = t + self.return_delay_s

    def _test_done(self, t: float) -> None:
        self.test_until = None

    def _calibration_done(self, t: float) -> None:
        self.calibrating, self.calibration_until = False, None

    def _switch_off(self, g: Group, t: float, what: str) -> None:
        if g is self.main:
            # The main group feeds the switched groups: they go off first, and come back with it.
            for other in self.groups.values():
                if other is not g and other.on:
                    other.on, other.pending = False, None
                    other.return_on_mains = what != "off"
        g.on, g.pending = False, None
        if what == "reboot":
            g.return_at = t + self.return_delay_s
        elif what == "shutdown":
            # Shutdown-and-return: back on when mains is present (now or later).
            g.return_on_mains = True
            if self.mains:
                g.return_at = t + self.return_delay_s

    def _pending_due(self, g: Group, t: float) -> None:
        assert g.pending is not None
        self._switch_off(g, t, g.pending[0])

    def _output_back(self, g: Group, t: float) -> None:
        g.on, g.return_at, g.return_on_mains = True, None, False
        if g is self.main:
            for other in self.groups.values():
                if other is not g and not other.on and other.return_on_mains:
                    other.on, other.return_at, other.return_on_mains = True, None, False
        elif not self.main.on:
            # A switched group has no power while the main group is off: it comes back with it.
            g.on, g.return_on_mains = False, True

    def _battery_empty(self, t: float) -> None:
        self.charge = 0.0
        self.calibrating, self.calibration_until = False, None
        self._switch_off(self.main, t, "off")
        for g in self.groups.values():
            g.return_on_mains = True  # a Smart-UPS restarts its load when mains returns

    def update(self) -> None:
        self.request_times.append(time.monotonic())
        self._refresh(self._advance())

    # -- registers -------------------------------------------------------------
    def _poke(self, name: str, value: Any) -> None:
        assert self.profile is not None
        p = self.profile.point(name)
        self.store.poke(p.table, p.address, encode(p, value))

    def _refresh(self, now: float) -> None:
        on_batt, runtime = self.on_battery, self.runtime()
        main = self.main
        self._poke(
            "status",
            {
                "online": self.output_on and self.mains and not self.testing and not self.calibrating,
                "on_battery": on_batt,
                "output_off": not self.output_on,
                "fault": self.flags["fault"],
                "input_bad": not self.mains,
                "self_test": self.testing,
                "output_off_pending": main.pending is not None,
                "eco_mode": False,
            },
        )
        self._poke(
            "signalling_status",
            {
                "power_failure": not self.mains,
                "shutdown_imminent": self.flags["low_battery"] or (on_batt and runtime <= self.low_runtime_s),
            },
        )
        self._poke(
            "power_errors",
            {
                "overload": self.flags["overload"] or self.load_pct > 100,
                "over_temperature": self.flags["over_temperature"],
            },
        )
        self._poke(
            "battery_errors",
            {
                "battery_disconnected": self.flags["battery_disconnected"],
                "battery_needs_replacement": self.flags["battery_needs_replacement"],
            },
        )
        self._poke("calibration_status", {"calibrating": self.calibrating})
        self._poke("runtime_s", int(runtime))
        self._poke("charge_pct", round(self.charge * 100.0, 2))
        self._poke("battery_v", 24.0 + 3.3 * self.charge if self.mains else 23.0 + 3.0 * self.charge)
        self._poke("battery_temp_c", self.battery_temp_c)
        self._poke("load_pct", self.present_load())
        self._poke("output_v", NOMINAL_V if self.output_on else 0.0)
        assert self.profile is not None
        p = self.profile.point("input_v")
        if not self.input_v_available:
            self.store.poke("holding", p.address, [0xFFFF])
        else:
            self._poke("input_v", NOMINAL_V if self.mains else 0.0)
        for g in self.groups.values():
            if g.countdown_point:
                self._poke(
                    g.countdown_point, -1 if g.pending is None else max(0, math.ceil(g.pending[1] - now))
                )

    def _on_write(self, table: str, address: int, values: list[int]) -> None:
        assert self.profile is not None
        now = self._advance()
        if address == self.profile.point("outlet_command").address:
            bits = decode(self.profile.point("outlet_command"), values)
            self.outlet_commands.append(
                {
                    "at": time.time(),
                    "raw": bits["raw"],
                    "bits": sorted(k for k, v in bits.items() if v is True),
                }
            )
            for name, g in self.groups.items():
                if bits.get(name):
                    self._outlet_command(g, bits, now)
        elif address == self.profile.point("signalling_command").address and values[0] & 1:
            self.outlet_commands.append({"at": time.time(), "raw": values[0], "bits": ["request_shutdown"]})
            self.main.pending = ("shutdown", now + self._delay(self.main))
        self._refresh(now)

    def _delay(self, g: Group) -> int:
        assert self.profile is not None
        p = self.profile.point(g.delay_point or "shutdown_delay_s")
        return decode(p, self.store.read("holding", p.address, p.count))

    def _outlet_command(self, g: Group, bits: dict[str, Any], now: float) -> None:
        due = now + (self._delay(g) if bits["use_off_delay"] else 0)
        if bits["cancel"]:
            g.pending = None
        elif bits["on"]:
            g.pending, g.on, g.return_at = None, self.main.on or g is self.main, None
        elif bits["off"]:
            g.pending = ("off", due)
        elif bits["shutdown"]:
            g.pending = ("shutdown", due)
        elif bits["reboot"]:
            g.pending = ("reboot", due)

    # -- control actions ---------------------------------------------------------
    def mains_fail(self) -> dict[str, Any]:
        self._advance()
        self.mains, self.mains_back_at = False, None
        return self.state()

    def mains_restore(self) -> dict[str, Any]:
        now = self._advance()
        if not self.mains:
            self._mains_back(now)
        return self.state()

    def flicker(self, duration_s: float = 2.0) -> dict[str, Any]:
        """Mains lost for ``duration_s`` and back by itself."""
        now = self._advance()
        self.mains, self.mains_back_at = False, now + float(duration_s)
        return self.state()

    def self_test(self, duration_s: float = 5.0) -> dict[str, Any]:
        """The UPS's own battery test: on battery with mains present, test bit set."""
        now = self._advance()
        if not self.mains:
            raise SimError(f"{self.device_id}: a self-test needs mains present")
        self.test_until = now + float(duration_s)
        return self.state()

    def calibrate(self, duration_s: float | None = None) -> dict[str, Any]:
        """A runtime calibration: the load on battery with mains present, the battery drained on
        purpose down to ``calibration_end_pct`` (or for ``duration_s``), register 24 bit 1 set."""
        now = self._advance()
        if not self.mains:
            raise SimError(f"{self.device_id}: a runtime calibration needs mains present")
        if self.charge < 0.995:
            raise SimError(
                f"{self.device_id}: a runtime calibration needs a full battery "
                f"(charge {self.charge * 100:.1f} %)"
            )
        self.calibrating = True
        self.calibration_until = None if duration_s is None else now + float(duration_s)
        return self.state()

    def calibrate_abort(self) -> dict[str, Any]:
        self._advance()
        self.calibrating, self.calibration_until = False, None
        return self.state()

    def _flag_action(self, flag: str) -> Callable[..., dict[str, Any]]:
        def act(on: bool = True) -> dict[str, Any]:
            self._advance()
            self.flags[flag] = bool(on)
            return self.state()

        return act

    def set_swap_bytes(self, on: bool = True) -> dict[str, Any]:
        """A gateway that swaps the bytes of every register (a wiring/config fault)."""
        self.store.swap_bytes = bool(on)
        return {"swap_bytes": self.store.swap_bytes}

    def set_swap_words(self, on: bool = True) -> dict[str, Any]:
        """A gateway that swaps the two words of every 32-bit value (16-bit values read fine)."""
        self.store.swap_words = bool(on)
        return {"swap_words": self.store.swap_words}

    def set_model(
        self,
        charge_pct: float | None = None,
        load_pct: float | None = None,
        full_runtime_s: float | None = None,
        low_runtime_s: float | None = None,
        battery_temp_c: float | None = None,
        return_delay_s: float | None = None,
        input_v_available: bool | None = None,
    ) -> dict[str, Any]:
        self._advance()
        if charge_pct is not None:
            self.charge = min(1.0, max(0.0, float(charge_pct) / 100.0))
        if load_pct is not None:
            self.load_pct = float(load_pct)
        if full_runtime_s is not None:
            self.full_runtime_s = float(full_runtime_s)
        if low_runtime_s is not None:
            self.low_runtime_s = float(low_runtime_s)
        if battery_temp_c is not None:
            self.battery_temp_c = float(battery_temp_c)
        if return_delay_s is not None:
            self.return_delay_s = float(return_delay_s)
        if input_v_available is not None:
            self.input_v_available = bool(input_v_available)
        return self.state()

    def get_points(self) -> dict[str, Any]:
        self._refresh(self._advance())
        return super().get_points()

    def _group_state(self, g: Group, now: float) -> dict[str, Any]:
        return {
            "on": g.on,
            "pending": g.pending[0] if g.pending else None,
            "countdown_s": None if g.pending is None else max(0, math.ceil(g.pending[1] - now)),
            "return_on_mains": g.return_on_mains,
        }

    def state(self) -> dict[str, Any]:
        now = self._advance()
        self._refresh(now)
        main = self._group_state(self.main, now)
        return {
            "mains": self.mains,
            "output_on": self.output_on,
            "on_battery": self.on_battery,
            "self_test": self.testing,
            "calibrating": self.calibrating,
            "charge_pct": round(self.charge * 100.0, 2),
            "runtime_s": int(self.runtime()),
            "load_pct": self.present_load(),
            "pending": main["pending"],
            "countdown_s": main["countdown_s"],
            "return_on_mains": main["return_on_mains"],
            "outlet_commands": list(self.outlet_commands),
            "groups": {n: self._group_state(g, now) for n, g in self.groups.items()},
            "flags": dict(self.flags),
        }

    def line_stats(self) -> dict[str, Any]:
        """Requests seen and the shortest silence between two of them (AN176 asks >= 35 ms)."""
        t = list(self.request_times)
        gaps = [b - a for a, b in itertools.pairwise(t)]
        return {"requests": len(t), "min_gap_ms": round(min(gaps) * 1000, 2) if gaps else None}
