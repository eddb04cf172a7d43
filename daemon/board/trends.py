"""Trends for the board: recent dose rate per area monitor, UPS charge and runtime, call response times.

Everything here is bounded whatever the message rate: a series is a fixed number of time
buckets over a sliding window (``POINTS`` buckets of ``WINDOW_S / POINTS`` seconds), so memory
and the payload sent to browsers stay the same size at one sample a second or ten. A bucket
keeps the *worst* fresh value that fell in it (the highest dose rate, the lowest charge and
runtime): downsampling must never hide a peak.

A sample is fresh only when its device says so (``comm`` ok, not ``stale``, a number) and its
reading is at most ``STALE_AFTER_S`` old when it arrives; anything else marks its bucket as a
gap. A bucket holding both is drawn alone, never joined to its neighbours, so a line never
bridges a time the value was not known.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from suitemon.daemon.alarms import iso

log = structlog.get_logger("suitemon.board.trends")

WINDOW_S = 1800.0  # issue 17 item 4: the last 30 minutes
POINTS = 60  # 30 s buckets
STALE_AFTER_S = 15.0  # the daemon republishes every device state at least every 5 s (as the page's NO UPDATE)
UPS_KEEP_S = 600.0  # a UPS chart stays this long after mains returns, so the cut can still be read
MAX_SERIES = 32  # area monitors and UPSs charted at once; far above a suite's handful
MAX_RESPONSES = 500  # call responses remembered (about 36 h of a busy ward's calls)
RESPONSE_KEEP_S = 36 * 3600.0


def parse_ts(s: Any) -> float | None:
    """An ISO timestamp as epoch seconds (naive ones are UTC), or None when it is not one."""
    if not isinstance(s, str) or not s:
        return None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _round(v: float) -> float:
    """Four significant digits: enough for a 110 px chart, short in the payload."""
    if v == 0 or not math.isfinite(v):
        return 0.0
    return round(v, max(0, 3 - math.floor(math.log10(abs(v)))))


@dataclass
class Bucket:
    value: float | None = None  # the worst fresh value in the bucket
    gap: bool = False  # a sample that was not fresh fell in this bucket
    shown: float | None = None  # value rounded for the page, kept so a view costs no arithmetic


@dataclass
class Ring:
    """One value over a sliding window, downsampled to ``points`` buckets; ``worst`` picks the kept one."""

    worst: Callable[[float, float], float]
    window_s: float = WINDOW_S
    points: int = POINTS
    buckets: dict[int, Bucket] = field(default_factory=dict)
    latest: tuple[float, float | None] | None = None  # (reading time, value; None when not fresh)
    version: int = 0  # bumped by each add, so an unchanged window is not rebuilt every second
    _cached: tuple[int, int, dict[str, Any]] | None = None  # (first bucket, version, view)

    @property
    def step_s(self) -> float:
        return self.window_s / self.points

    def _first(self, now: float) -> int:
        return math.floor(now / self.step_s) - self.points + 1

    def add(self, t: float, value: float | None, now: float) -> bool:
        """Record one sample taken at ``t`` (``None``: not fresh). False when outside the window."""
        idx = math.floor(t / self.step_s)
        first = self._first(now)
        if idx < first or idx > first + self.points - 1:
            return False
        b = self.buckets.setdefault(idx, Bucket())
        self.version += 1
        if value is None:
            b.gap = True
        else:
            worst = value if b.value is None else self.worst(b.value, value)
            if worst != b.value:
                b.value, b.shown = worst, _round(worst)
        if self.latest is None or t >= self.latest[0]:
            self.latest = (t, value)
        self._prune(first)
        return True

    def _prune(self, first: int) -> None:
        for k in [k for k in self.buckets if k < first]:
            del self.buckets[k]

    def view(self, now: float) -> dict[str, Any]:
        """``values[i]`` covers ``t0 + i*step_s``; null is a gap; ``broken`` buckets are drawn unjoined."""
        first = self._first(now)
        if self._cached is None or self._cached[:2] != (first, self.version):
            self._prune(first)
            values: list[float | None] = []
            broken: list[int] = []
            for i in range(self.points):
                b = self.buckets.get(first + i)
                values.append(None if b is None else b.shown)
                if b is not None and b.shown is not None and b.gap:
                    broken.append(i)
            window = {
                "t0": iso(first * self.step_s),
                "step_s": self.step_s,
                "values": values,
                "broken": broken,
            }
            self._cached = (first, self.version, window)
        return {**self._cached[2], "latest": self.current(now)}

    def current(self, now: float) -> dict[str, Any]:
        """The newest value, and whether it is current: a value past its age is never shown as fresh."""
        if self.latest is None:
            return {"value": None, "at": None, "current": False}
        t, v = self.latest
        current = v is not None and now - t <= STALE_AFTER_S
        return {"value": None if v is None else _round(v), "at": iso(t), "current": current}


def fresh_value(dev: dict[str, Any], value: Any, t: float, now: float) -> float | None:
    """The sample's value if it may be drawn as known, else None (a gap)."""
    if dev.get("comm") != "ok" or dev.get("stale"):
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    if now - t > STALE_AFTER_S:
        return None  # e.g. a retained state of a daemon that died: its last reading, long ago
    return float(value)


def dose_rate_of(dev: dict[str, Any]) -> tuple[Any, str] | None:
    """The device's dose rate and its unit, or None when it reports none (not an area monitor)."""
    values = _object(dev.get("values"))
    units = _object(dev.get("units"))
    for key in ("dose_rate_usv_h", "dose_rate"):
        if key in dev and (dev[key] is None or isinstance(dev[key], (int, float))):
            if dev[key] is not None or "thresholds" in dev:  # None: the daemon withholds a faulty reading
                return dev[key], "µSv/h" if "usv" in key or key == "dose_rate" else ""
    for key, v in values.items():
        if "dose_rate" in key and isinstance(v, (int, float)) and not isinstance(v, bool):
            unit = units.get(key) or ("µSv/h" if "usv" in key.lower() else dev.get("unit") or "")
            return v, str(unit).replace("uSv", "µSv")
    return None


def _object(x: Any) -> dict[str, Any]:
    """A payload field that should be an object; anything else (a list, a string) counts as empty."""
    return x if isinstance(x, dict) else {}


def is_ups(did: str, dev: dict[str, Any]) -> bool:
    return str(dev.get("kind") or "").startswith("ups") or did.startswith("ups")


def _first_number(values: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((values[k] for k in keys if k in values), None)


@dataclass
class DoseSeries:
    rate: Ring = field(default_factory=lambda: Ring(max))
    unit: str = ""
    device: dict[str, Any] = field(default_factory=dict)  # the newest state (name, area, thresholds)


@dataclass
class UpsSeries:
    charge: Ring = field(default_factory=lambda: Ring(min))
    runtime: Ring = field(default_factory=lambda: Ring(min))
    device: dict[str, Any] = field(default_factory=dict)
    on_battery: bool | None = None  # as last known from a fresh state
    battery_since: float | None = None
    mains_back_at: float | None = None

    def shown(self, now: float) -> bool:
        """While on battery (or last known so) and for ``UPS_KEEP_S`` after mains returns."""
        if self.on_battery:
            return True
        return self.mains_back_at is not None and now - self.mains_back_at <= UPS_KEEP_S


class Trends:
    """The board's trend store; fed by the model on each device state and event."""

    def __init__(self) -> None:
        self.dose: dict[str, DoseSeries] = {}
        self.ups: dict[str, UpsSeries] = {}
        self.responses: dict[str, dict[str, Any]] = {}  # occurrence -> one call's press and accept
        self.refused_series = 0
        self.bad_responses = 0

    def _slot(self, table: dict[str, Any], did: str, make: Callable[[], Any]) -> Any:
        slot = table.get(did)
        if slot is None:
            if len(self.dose) + len(self.ups) >= MAX_SERIES:
                self.refused_series += 1
                if self.refused_series % 100 == 1:
                    log.warning("trend not kept: too many series", device=did[:64], cap=MAX_SERIES)
                return None
            slot = table[did] = make()
        return slot

    def on_device(self, did: str, dev: dict[str, Any], now: float, ts: float | None) -> bool:
        """One device state; True when a trend changed."""
        t = min(ts, now) if ts is not None else now
        found = dose_rate_of(dev)
        if found is not None:
            s: DoseSeries | None = self._slot(self.dose, did, DoseSeries)
            if s is None:
                return False
            s.unit, s.device = found[1], dev
            return s.rate.add(t, fresh_value(dev, found[0], t, now), now)
        if is_ups(did, dev):
            u: UpsSeries | None = self._slot(self.ups, did, UpsSeries)
            if u is None:
                return False
            return self._ups(u, dev, t, now)
        return False

    @staticmethod
    def _ups(u: UpsSeries, dev: dict[str, Any], t: float, now: float) -> bool:
        u.device = dev
        v = _object(dev.get("values"))
        charge = fresh_value(dev, _first_number(v, ("charge_pct", "state_of_charge_pct")), t, now)
        runtime = fresh_value(dev, _first_number(v, ("runtime_s", "runtime_remaining_s")), t, now)
        changed = u.charge.add(t, charge, now)
        changed = u.runtime.add(t, runtime, now) or changed
        says = isinstance(v.get("on_battery"), bool) or isinstance(v.get("power_failure"), bool)
        if says and fresh_value(dev, 0, t, now) is not None:  # only a fresh state that says it tells
            battery = v.get("on_battery") is True or v.get("power_failure") is True
            if battery and not u.on_battery:
                u.battery_since, u.mains_back_at = t, None
            elif not battery and u.on_battery:
                u.mains_back_at = t
            changed = changed or battery != u.on_battery
            u.on_battery = battery
        return changed

    def on_accepted(self, ev: dict[str, Any], now: float) -> bool:
        """An ``alarm.accepted`` event: a clinical call's response (press -> accept)."""
        rec = (ev.get("data") or {}).get("alarm")
        if not isinstance(rec, dict) or rec.get("kind") != "clinical":
            return False
        occ = rec.get("occurrence") or ev.get("alarm_id")
        pressed, accepted = parse_ts(rec.get("raised_at")), parse_ts(ev.get("ts"))
        if not isinstance(occ, str) or occ in self.responses:
            return False  # at-least-once delivery: the same accept may come twice
        if pressed is None or accepted is None or accepted < pressed:
            self.bad_responses += 1
            log.warning("call response not counted: bad times", alarm_id=ev.get("alarm_id"), occurrence=occ)
            return False
        for key in [k for k, r in self.responses.items() if now - r["accepted"] > RESPONSE_KEEP_S]:
            del self.responses[key]
        while len(self.responses) >= MAX_RESPONSES:
            self.responses.pop(next(iter(self.responses)))
        self.responses[occ] = {
            "pressed": pressed,
            "accepted": accepted,
            "room": rec.get("location"),
            "type": rec.get("type"),
            "accepted_by": ev.get("actor"),
        }
        return True
