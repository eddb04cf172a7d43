"""Register profiles: a device's Modbus map as data (TOML), and the decoder that reads it.

A profile lists *points*; each point is one item in one table (coil, discrete,
input, holding) at an address, with a type (u16, s16, u32, s32, f32, bool, or
ascii: ``length`` registers of text, two characters a register, high byte first),
a scale and a unit. Multi-register items are read whole, never split across
two requests (APC AN176 rule), and their word order is the profile's or the point's.
"""

from __future__ import annotations

import struct
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from suitemon.drivers.base import ProfileError
from suitemon.drivers.config import Strict

Table = Literal["coil", "discrete", "input", "holding"]
WordOrder = Literal["big", "little"]
TYPES = {"bool": 1, "u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2, "ascii": 0}  # ascii: its length
MAX_ASCII_REGISTERS = 60
BIT_TABLES = ("coil", "discrete")


@dataclass(frozen=True)
class Point:
    name: str
    table: Table
    address: int
    type: str = "u16"
    scale: float = 1.0  # value = raw / scale
    unit: str | None = None
    word_order: Literal["big", "little"] = "big"
    signed_sentinel: int | None = None  # raw value meaning "not available"
    bits: dict[str, int] = field(default_factory=dict)  # name -> bit, for status words
    writable: bool = False
    length: int = 0  # registers, for type "ascii" only

    @property
    def count(self) -> int:
        return self.length if self.type == "ascii" else TYPES[self.type]

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True)
class Profile:
    name: str
    points: tuple[Point, ...]
    max_block: int = 60  # registers per request
    max_gap: int = 0  # unused registers a block may bridge (some devices refuse holes)
    word_order: Literal["big", "little"] = "big"
    meta: dict[str, Any] = field(default_factory=dict)

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)

    def blocks(self, names: Iterable[str] | None = None) -> list[tuple[Table, int, int, tuple[Point, ...]]]:
        """Group points into read requests: (table, start, count, points). Items are never split."""
        wanted = [p for p in self.points if names is None or p.name in set(names)]
        out: list[tuple[Table, int, int, tuple[Point, ...]]] = []
        tables: tuple[Table, ...] = ("coil", "discrete", "input", "holding")
        for table in tables:
            pts = sorted((p for p in wanted if p.table == table), key=lambda p: p.address)
            limit = 2000 if table in BIT_TABLES else self.max_block
            cur: list[Point] = []
            for p in pts:
                if cur:
                    start = cur[0].address
                    end = max(q.end for q in cur)
                    if p.address - end <= self.max_gap and max(end, p.end) - start <= limit:
                        cur.append(p)
                        continue
                    out.append((table, start, end - start, tuple(cur)))
                cur = [p]
            if cur:
                start = cur[0].address
                out.append((table, start, max(q.end for q in cur) - start, tuple(cur)))
        return out


def decode(point: Point, words: list[int] | list[bool]) -> Any:
    """Raw registers (or bits) of one point -> its value. Table-tested in tests/test_profile.py."""
    if point.type == "bool":
        return bool(words[0])
    if point.type == "ascii":
        text = b"".join(int(w).to_bytes(2, "big") for w in words)
        # NUL ends the text, trailing spaces pad it; bytes that are not ASCII become U+FFFD
        # so the driver can see (and refuse) garbage instead of guessing what was meant.
        return text.split(b"\0", 1)[0].decode("ascii", errors="replace").rstrip(" ")
    if point.count == 2:
        hi, lo = (words[0], words[1]) if point.word_order == "big" else (words[1], words[0])
        raw32 = (hi << 16) | lo
        if point.signed_sentinel is not None and raw32 == point.signed_sentinel:
            return None
        if point.type == "f32":
            value = struct.unpack(">f", raw32.to_bytes(4, "big"))[0]
        elif point.type == "s32":
            value = raw32 - (1 << 32) if raw32 & 0x80000000 else raw32
        else:
            value = raw32
    else:
        raw = words[0]
        if point.signed_sentinel is not None and raw == point.signed_sentinel:
            return None
        value = raw - 0x10000 if point.type == "s16" and raw & 0x8000 else raw
    if point.bits:
        return {name: bool(value >> bit & 1) for name, bit in point.bits.items()} | {"raw": value}
    if point.scale != 1.0:
        return value / point.scale
    return value


def encode(point: Point, value: Any) -> list[int]:
    """Value -> raw registers, for simulators and writes."""
    if point.type == "bool":
        return [1 if value else 0]
    if point.type == "ascii":
        data = str(value).encode("ascii")
        if len(data) > 2 * point.length:
            raise ValueError(f"{point.name}: {len(data)} characters do not fit in {point.length} registers")
        data = data.ljust(2 * point.length, b"\0")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if isinstance(value, dict):
        raw = sum(1 << bit for name, bit in point.bits.items() if value.get(name))
    elif point.type == "f32":
        raw = int.from_bytes(struct.pack(">f", float(value)), "big")
    else:
        raw = round(float(value) * point.scale) if point.scale != 1.0 else int(value)
        if raw < 0:
            raw += 1 << (16 * point.count)
    if point.count == 2:
        hi, lo = raw >> 16 & 0xFFFF, raw & 0xFFFF
        return [hi, lo] if point.word_order == "big" else [lo, hi]
    return [raw & 0xFFFF]


class PointSpec(Strict):
    """One point as written in a profile; checked like the config (unknown keys, types, ranges)."""

    table: Table
    address: StrictInt = Field(ge=0, le=65535)
    type: Literal["bool", "u16", "s16", "u32", "s32", "f32", "ascii"] | None = None
    # value = raw / scale: 0 would divide by zero at the first poll; NaN/inf would poison every value.
    scale: float = Field(1.0, allow_inf_nan=False)
    unit: str | None = None
    word_order: WordOrder | None = None  # default: the profile's
    signed_sentinel: StrictInt | None = None
    bits: dict[str, Annotated[StrictInt, Field(ge=0, le=31)]] = Field(default_factory=dict)
    writable: StrictBool = False
    length: StrictInt | None = None

    @field_validator("scale")
    @classmethod
    def _scale_not_zero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale must not be 0 (value = raw / scale)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PointSpec:
        kind = self.type or ("bool" if self.table in BIT_TABLES else "u16")
        if self.table in BIT_TABLES and kind != "bool":
            raise ValueError("coils and discrete inputs are type 'bool'")
        if kind == "ascii":
            if self.table not in ("input", "holding"):
                raise ValueError("ascii text lives in input or holding registers")
            if self.length is None or not 1 <= self.length <= MAX_ASCII_REGISTERS:
                raise ValueError(f"ascii needs length = 1..{MAX_ASCII_REGISTERS} registers")
        elif self.length is not None:
            raise ValueError("length is for ascii points only")
        if self.bits and kind not in ("u16", "s16", "u32", "s32"):
            raise ValueError("bits are for integer status words")
        return self


class ProfileSpec(Strict):
    """A register profile as written (after ``extends`` is resolved)."""

    name: str | None = None
    description: str = ""
    word_order: WordOrder = "big"
    max_block: StrictInt = Field(60, ge=1, le=125)  # Modbus: at most 125 registers per read
    max_gap: StrictInt = Field(0, ge=0, le=125)
    points: dict[str, PointSpec] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


def validation_issues(err: ValidationError) -> list[str]:
    """Every pydantic error as ``key.path: message`` (the config's wording)."""
    out = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"])
        msg = (
            "unknown key (typo?)"
            if e["type"] == "extra_forbidden"
            else e["msg"].removeprefix("Value error, ")
        )
        out.append(f"{where}: {msg}" if where else msg)
    return out


def parse_profile(data: dict[str, Any], name: str = "<inline>") -> Profile:
    try:
        spec = ProfileSpec.model_validate(data)
    except ValidationError as err:
        raise ProfileError(f"profile {name}: " + "; ".join(validation_issues(err))) from err
    points = []
    for pname, p in spec.points.items():
        kind = p.type or ("bool" if p.table in BIT_TABLES else "u16")
        points.append(
            Point(
                name=pname,
                table=p.table,
                address=p.address,
                type=kind,
                scale=p.scale,
                unit=p.unit,
                word_order=p.word_order or spec.word_order,
                signed_sentinel=p.signed_sentinel,
                bits=dict(p.bits),
                writable=p.writable,
                length=p.length or 0,
            )
        )
    return Profile(
        name=spec.name or name,
        points=tuple(points),
        max_block=spec.max_block,
        max_gap=spec.max_gap,
        word_order=spec.word_order,
        meta=spec.meta,
    )


def profile_text(ref: str, what: str = "profile") -> str:
    """The TOML text of a shipped profile by name (``apc_smart_ups``) or of a file by path."""
    path = Path(ref)
    if path.suffix == ".toml" and path.exists():
        return path.read_text()
    try:
        return resources.files("suitemon.drivers.profiles").joinpath(f"{ref}.toml").read_text()
    except (FileNotFoundError, ModuleNotFoundError) as err:
        raise ProfileError(f"no {what} named '{ref}' (shipped or file)") from err


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; tables (points, meta) merge key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def profile_data(ref: str, what: str = "profile", _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A profile's TOML as data, with ``extends = "<base>"`` resolved: the base's keys, then this
    file's on top (tables merged). ``name`` is never inherited: a profile is not its base."""
    if ref in _seen:
        raise ProfileError(f"{what} {ref}: extends itself ({' -> '.join((*_seen, ref))})")
    try:
        data = tomllib.loads(profile_text(ref, what))
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{what} {ref}: not valid TOML: {err}") from err
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ProfileError(f"{what} {ref}: extends: must be a profile name or path")
    if not Path(base).is_absolute() and Path(ref).suffix == ".toml" and Path(Path(ref).parent, base).exists():
        base = str(Path(Path(ref).parent, base))  # a file next to the extending file
    inherited = profile_data(base, what, (*_seen, ref))
    inherited.pop("name", None)
    return _merge(inherited, data)


def load_profile(ref: str) -> Profile:
    """A shipped profile by name (``apc_smart_ups``) or a TOML file by path."""
    return parse_profile(profile_data(ref), ref)


def _register_profile_loads(ref: str) -> str:
    try:
        load_profile(ref)
    except ProfileError as err:
        raise ValueError(str(err)) from err
    return ref


# A device config's ``profile``: refused by check-config when the profile does not load or validate,
# not when the daemon first builds the driver.
ProfileRef = Annotated[str, AfterValidator(_register_profile_loads)]
