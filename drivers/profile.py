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
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Literal

from suitemon.drivers.base import ProfileError

Table = Literal["coil", "discrete", "input", "holding"]
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
        out = []
        for table in ("coil", "discrete", "input", "holding"):
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
        raw = b"".join(int(w).to_bytes(2, "big") for w in words)
        # NUL ends the text, trailing spaces pad it; bytes that are not ASCII become U+FFFD
        # so the driver can see (and refuse) garbage instead of guessing what was meant.
        return raw.split(b"\0", 1)[0].decode("ascii", errors="replace").rstrip(" ")
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
        return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
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


def parse_profile(data: dict[str, Any], name: str = "<inline>") -> Profile:
    try:
        defaults = {"word_order": data.get("word_order", "big")}
        points = []
        for pname, p in data.get("points", {}).items():
            p = {**defaults, **p}
            if p.get("type", "u16") not in TYPES:
                raise ProfileError(f"point {pname}: unknown type {p.get('type')!r}")
            if p.get("table") not in ("coil", "discrete", "input", "holding"):
                raise ProfileError(f"point {pname}: table must be coil, discrete, input or holding")
            if not isinstance(p.get("address"), int) or not 0 <= p["address"] <= 65535:
                raise ProfileError(f"point {pname}: address must be an integer 0..65535")
            if p["table"] in BIT_TABLES and p.get("type", "bool") != "bool":
                raise ProfileError(f"point {pname}: coils and discrete inputs are type 'bool'")
            if p["table"] in BIT_TABLES:
                p["type"] = "bool"
            if p.get("type") == "ascii":
                if p["table"] not in ("input", "holding"):
                    raise ProfileError(f"point {pname}: ascii text lives in input or holding registers")
                if not isinstance(p.get("length"), int) or not 1 <= p["length"] <= MAX_ASCII_REGISTERS:
                    raise ProfileError(f"point {pname}: ascii needs length = 1..{MAX_ASCII_REGISTERS} registers")
            elif "length" in p:
                raise ProfileError(f"point {pname}: length is for ascii points only")
            points.append(Point(name=pname, **p))
        return Profile(name=data.get("name", name), points=tuple(points),
                       max_block=data.get("max_block", 60), max_gap=data.get("max_gap", 0),
                       word_order=defaults["word_order"], meta=data.get("meta", {}))
    except TypeError as err:
        raise ProfileError(f"profile {name}: {err}") from err


def profile_text(ref: str, what: str = "profile") -> str:
    """The TOML text of a shipped profile by name (``apc_smart_ups``) or of a file by path."""
    path = Path(ref)
    if path.suffix == ".toml" and path.exists():
        return path.read_text()
    try:
        return resources.files("suitemon.drivers.profiles").joinpath(f"{ref}.toml").read_text()
    except (FileNotFoundError, ModuleNotFoundError) as err:
        raise ProfileError(f"no {what} named '{ref}' (shipped or file)") from err


def load_profile(ref: str) -> Profile:
    """A shipped profile by name (``apc_smart_ups``) or a TOML file by path."""
    text = profile_text(ref)
    try:
        return parse_profile(tomllib.loads(text), ref)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"profile {ref}: not valid TOML: {err}") from err
