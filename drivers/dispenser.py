"""Driver for a dose-dispensing unit speaking the suitemon reference interface (Modbus RTU/TCP).

Each poll reads the 56-register header in one request (unit state, error bits, vial,
current job, last administration, completion counter), then only the ring entries it
has not handled yet: completion numbers ``cursor + 1 .. jobs_completed``. The driver
never moves its own cursor: the daemon moves it once an administration is recorded
(``cursor`` is set at start from the journal), so a record that failed to be processed
is read again on the next poll instead of being lost. Entries overwritten before they
could be read are reported as a lost range, never skipped in silence.

Register map: drivers/profiles/dispenser_reference.toml; meaning and rules for
implementers: docs/dispenser-interface.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from suitemon.drivers.base import DeviceException, ProfileError, Reading
from suitemon.drivers.config import Id, ModbusDeviceConfig
from suitemon.drivers.modbus_link import ProfileDriver
from suitemon.drivers.profile import Profile, ProfileRef, decode, load_profile, parse_profile

INTERFACE_VERSION = 1
UNIT_STATES = ("idle", "drawing_up", "ready", "injecting", "complete", "error")


class Config(ModbusDeviceConfig):
    kind: Literal["dispenser"]
    profile: ProfileRef = "dispenser_reference"
    rooms: dict[int, Id] = Field(
        default_factory=dict, description="room number in the unit's job -> area id (uptake room)"
    )
    clock_skew_s: float = Field(
        300.0, gt=0, le=86400, description="how far ahead of suitemon's clock a unit time may be"
    )


class InterfaceMismatch(DeviceException):
    """The unit does not implement the interface version or ring size this profile describes."""


@dataclass(frozen=True)
class Ring:
    base: int
    stride: int
    slots: int
    entry: Profile  # points at addresses relative to a slot's start

    def slot_address(self, seq: int) -> int:
        return self.base + ((seq - 1) % self.slots) * self.stride


@dataclass(frozen=True)
class Codes:
    unit_state: Mapping[int, str]
    radionuclide: Mapping[int, str]
    radiopharmaceutical: Mapping[int, str]


def ring_of(profile: Profile) -> Ring:
    try:
        r = profile.meta["ring"]
        entry = parse_profile({"points": r["points"]}, f"{profile.name}.ring")
        ring = Ring(int(r["base"]), int(r["stride"]), int(r["slots"]), entry)
    except (KeyError, TypeError, ValueError) as err:
        raise ProfileError(
            f"profile {profile.name}: [meta.ring] needs base, stride, slots, points ({err})"
        ) from err
    if ring.slots < 2 or max(p.end for p in entry.points) > ring.stride:
        raise ProfileError(f"profile {profile.name}: ring needs >= 2 slots and entries within the stride")
    return ring


def codes_of(profile: Profile) -> Codes:
    c = profile.meta.get("codes", {})
    try:
        tables = {
            name: {int(k): str(v) for k, v in c.get(name, {}).items()}
            for name in ("unit_state", "radionuclide", "radiopharmaceutical")
        }
    except ValueError as err:
        raise ProfileError(f"profile {profile.name}: code tables need integer keys ({err})") from err
    return Codes(**tables)


# -- decoding (pure; table-tested in tests/test_dispenser_decoding.py) --------------------
def iso_utc(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(value: str, field: str, issues: list[str]) -> str | None:
    if "\ufffd" in value or any(not 32 <= ord(ch) < 127 for ch in value):
        issues.append(f"{field}: not printable ASCII")
        value = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in value)
    return value or None


def _code(table: Mapping[int, str], raw: int, field: str, issues: list[str]) -> str | None:
    if raw in table:
        return table[raw]
    issues.append(f"{field}: unknown code {raw}")
    return None


def decode_entry(
    raw: Mapping[str, Any], codes: Codes, rooms: Mapping[int, str], now: float, clock_skew_s: float = 300.0
) -> dict[str, Any]:
    """One ring entry's raw point values -> an administration, with every problem listed in ``issues``.

    Nothing is dropped or repaired quietly: a bad field stays visible (None or '?') and is named.
    """
    issues: list[str] = []
    e: dict[str, Any] = {"seq": raw["seq"], "job": raw["job"]}
    e["patient_ref"] = _text(raw["patient_ref"], "patient_ref", issues)
    if e["patient_ref"] is None:
        issues.append("patient_ref: empty")
    for f in ("accession", "exam", "operator"):
        e[f] = _text(raw[f], f, issues)
    e["room_number"] = raw["room"]
    e["room"] = rooms.get(raw["room"])
    if e["room"] is None:
        issues.append(f"room: number {raw['room']} is not mapped to an area")
    e["weight_kg"] = raw["weight_kg"]
    e["radionuclide"] = _code(codes.radionuclide, raw["radionuclide"], "radionuclide", issues)
    e["radiopharmaceutical"] = _code(
        codes.radiopharmaceutical, raw["radiopharmaceutical"], "radiopharmaceutical", issues
    )
    e["prescribed_mbq"] = raw["prescribed_mbq"]
    e["measured_mbq"] = raw["measured_mbq"]
    if not e["measured_mbq"]:
        issues.append("measured_mbq: zero")
    if not e["prescribed_mbq"]:
        issues.append("prescribed_mbq: zero")
    e["residual_mbq"] = raw["residual_mbq"]
    e["half_life_s"] = raw["half_life_s"]
    for f in ("measured_at", "administered_at", "residual_at"):
        t = raw[f] or None
        if t is not None and t > now + clock_skew_s:
            issues.append(f"{f}: {t - now:.0f} s ahead of suitemon's clock")
        e[f] = float(t) if t is not None else None
    if e["administered_at"] is None:
        issues.append("administered_at: not set")
    if e["measured_at"] is None:
        issues.append("measured_at: not set")
    elif e["administered_at"] is not None and e["measured_at"] > e["administered_at"] + clock_skew_s:
        issues.append("measured_at: after the administration")
    if e["residual_mbq"] is None:
        e["residual_at"] = None
    e["issues"] = issues
    return e


def decode_header(raw: Mapping[str, Any], codes: Codes) -> dict[str, Any]:
    """The header's raw point values -> the device's published values."""
    state = codes.unit_state.get(raw["unit_state"], f"unknown:{raw['unit_state']}")
    vial_cal = raw["vial_calibration_time"]
    v: dict[str, Any] = {
        "unit_state": state,
        "errors": {k: bool(x) for k, x in raw["errors"].items() if k != "raw"}
        | {"raw": raw["errors"]["raw"]},
        "jobs_completed": raw["jobs_completed"],
        "vial_radionuclide": codes.radionuclide.get(raw["vial_radionuclide"]),
        "vial_radiopharmaceutical": codes.radiopharmaceutical.get(raw["vial_radiopharmaceutical"]),
        "vial_activity_mbq": raw["vial_activity_mbq"],
        "vial_calibrated_at": iso_utc(vial_cal),
        "vial_half_life_s": raw["vial_half_life_s"],
        "job": None,
        "last": None,
    }
    if raw["job_number"]:
        v["job"] = {
            "job": raw["job_number"],
            "patient_ref": raw["job_patient_ref"] or None,
            "accession": raw["job_accession"] or None,
            "exam": raw["job_exam"] or None,
            "operator": raw["job_operator"] or None,
            "room_number": raw["job_room"],
            "weight_kg": raw["job_weight_kg"],
            "prescribed_mbq": raw["job_prescribed_mbq"],
        }
    if raw["last_job"]:
        v["last"] = {
            "job": raw["last_job"],
            "measured_mbq": raw["last_measured_mbq"],
            "administered_at": iso_utc(raw["last_administered_at"] or None),
            "residual_mbq": raw["last_residual_mbq"],
        }
    return v


class DispenserDriver(ProfileDriver):
    config: Config

    def __init__(self, device_id: str, config: Config):
        super().__init__(device_id, config, load_profile(config.profile))
        self.ring = ring_of(self.profile)
        self.codes = codes_of(self.profile)
        # Last completion number handled; None = unknown (first start: a baseline is taken).
        self.cursor: int | None = None

    @property
    def poll_deadline(self) -> float:
        # Header plus, after an outage, every ring slot: one request each.
        return self.config.timeout_s * (self.ring.slots + 2) + 0.5

    async def poll(self) -> Reading:
        assert self.dev is not None, "open() first"
        raw = await self.dev.read_points()
        if raw["interface_version"] != INTERFACE_VERSION:
            raise InterfaceMismatch(
                f"unit reports interface version {raw['interface_version']}, "
                f"this profile is version {INTERFACE_VERSION}"
            )
        if raw["ring_slots"] != self.ring.slots:
            raise InterfaceMismatch(
                f"unit has {raw['ring_slots']} ring slots, profile says {self.ring.slots}"
            )
        values = decode_header(raw, self.codes)
        meta = await self._new_entries(raw["jobs_completed"])
        return Reading(self.device_id, values, meta=meta)

    async def _new_entries(self, total: int) -> dict[str, Any]:
        meta: dict[str, Any] = {"entries": []}
        if self.cursor is None:
            meta["baseline"] = total
            return meta
        start = self.cursor
        if total < start:
            # Counter went backwards: the unit was reset or replaced. Read what it has.
            meta["counter_reset"] = {"previous": start, "now": total}
            start = 0
        first = start + 1
        if total - start > self.ring.slots:
            meta["lost"] = {"from_seq": first, "to_seq": total - self.ring.slots}
            first = total - self.ring.slots + 1
        now = time.time()
        for seq in range(first, total + 1):
            entry = await self._read_slot(seq, now)
            if entry is None:
                break
            meta["entries"].append(entry)
        return meta

    async def _read_slot(self, seq: int, now: float) -> dict[str, Any] | None:
        assert self.dev is not None
        addr = self.ring.slot_address(seq)
        span = max(p.end for p in self.ring.entry.points)
        words = await self.dev.read_table("holding", addr, span)
        raw = {p.name: decode(p, words[p.address : p.end]) for p in self.ring.entry.points}
        if raw["seq"] != seq:
            # The unit must write the slot before it counts the completion; a slot that does not
            # hold what the counter says is read again next poll (and counted: a unit that keeps
            # doing this breaks the interface).
            self.count("ring_slot_mismatch")
            if raw["seq"] > seq:
                self.count("ring_overrun")
            return None
        return decode_entry(raw, self.codes, self.config.rooms, now, self.config.clock_skew_s)


__all__ = [
    "INTERFACE_VERSION",
    "UNIT_STATES",
    "Codes",
    "Config",
    "DispenserDriver",
    "InterfaceMismatch",
    "Ring",
    "codes_of",
    "decode_entry",
    "decode_header",
    "iso_utc",
    "ring_of",
]
