"""Strict reading of the few DICOM values suitemon uses.

pydicom is lenient on purpose (it warns and carries on); a dose figure read from a
malformed value must not be. Values are taken from the raw bytes and checked against
their VR's grammar (PS3.5 table 6.2-1). A bad value raises :class:`BadValue` naming the
attribute, so the instance is recorded as unparseable with that reason; attributes
suitemon does not use are never decoded, so their faults cannot reject an instance.

Thread-safe: no pydicom global settings and no warning filters are touched (pynetdicom
threads use pydicom at the same time).
"""

from __future__ import annotations

import math
import re
import struct
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag


class BadValue(ValueError):
    """An attribute suitemon needs is missing or does not follow its VR's grammar."""


_IS = re.compile(r"^[+-]?\d{1,12}$")
_DS = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_UI = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")
_OFFSET = re.compile(r"^([+-])(\d{2})(\d{2})$")

_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}


def _tag(keyword_or_tag: str | int):
    if isinstance(keyword_or_tag, str):
        t = tag_for_keyword(keyword_or_tag)
        if t is None:
            raise KeyError(keyword_or_tag)
        return Tag(t)
    return Tag(keyword_or_tag)


def _name(tag) -> str:
    kw = keyword_for_tag(tag) or "private"
    return f"{kw} ({tag.group:04X},{tag.element:04X})"


def _vr(elem, tag) -> str:
    vr = elem.VR
    if vr in (None, "UN"):
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
    return vr.split(" or ")[0]


def present(ds: Dataset, key: str | int) -> bool:
    elem = ds.get_item(_tag(key))
    return elem is not None and (elem.value not in (None, b"", "") if not isinstance(elem, Dataset) else True)


def _strings(ds: Dataset, key: str | int, required: bool) -> tuple[Any, list[str] | None]:
    tag = _tag(key)
    elem = ds.get_item(tag)
    if elem is None or elem.value is None or elem.value in (b"", ""):
        if required:
            raise BadValue(f"missing required attribute {_name(tag)}")
        return tag, None
    if isinstance(elem, RawDataElement):
        raw = bytes(elem.value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        parts = text.split("\\")
    else:
        v = elem.value
        parts = [str(x) for x in v] if isinstance(v, (list, MultiValue)) else [str(v)]
    parts = [p.strip(" \x00") for p in parts]
    if all(p == "" for p in parts):
        if required:
            raise BadValue(f"missing required attribute {_name(tag)} (empty)")
        return tag, None
    return tag, parts


def _single(tag, parts: list[str]) -> str:
    if len(parts) != 1:
        raise BadValue(f"{_name(tag)} has {len(parts)} values where one is expected")
    return parts[0]


def text(ds: Dataset, key: str | int, *, required: bool = False) -> str | None:
    _tag, parts = _strings(ds, key, required)
    return None if parts is None else "\\".join(parts)


def uid(ds: Dataset, key: str | int, *, required: bool = False) -> str | None:
    tag, parts = _strings(ds, key, required)
    if parts is None:
        return None
    v = _single(tag, parts)
    if len(v) > 64 or not _UI.match(v):
        raise BadValue(f"{_name(tag)} is not a valid UID: {v[:70]!r}")
    return v


def number(ds: Dataset, key: str | int, *, required: bool = False) -> float | None:
    """One numeric value (DS, IS or a binary number), checked against its VR."""
    tag = _tag(key)
    elem = ds.get_item(tag)
    vr = _vr(elem, tag) if elem is not None else None
    if vr in _BINARY and elem is not None and elem.value not in (None, b""):
        if isinstance(elem, RawDataElement):
            fmt = ("<" if elem.is_little_endian else ">") + _BINARY[vr]
            size = struct.calcsize(fmt)
            raw = bytes(elem.value)
            if len(raw) != size:
                raise BadValue(f"{_name(tag)} has {len(raw)} bytes where one {vr} value is {size}")
            return _finite(float(struct.unpack(fmt, raw)[0]), tag)
        v = elem.value
        if isinstance(v, (list, MultiValue)):
            if len(v) != 1:
                raise BadValue(f"{_name(tag)} has {len(v)} values where one is expected")
            v = v[0]
        return _finite(float(v), tag)
    tag, parts = _strings(ds, key, required)
    if parts is None:
        return None
    v = _single(tag, parts)
    grammar = _IS if vr == "IS" else _DS
    if not grammar.match(v) or (vr == "DS" and len(v) > 16):
        raise BadValue(f"invalid value for VR {vr}: {v[:40]!r} in {_name(tag)}")
    return _finite(float(v), tag)


def _finite(f: float, tag) -> float:
    # IEEE floats (FD/FL) can hold NaN and infinities; no dose is either, and "NaN > level" is
    # false, so such a value must never pass for a number.
    if not math.isfinite(f):
        raise BadValue(f"{_name(tag)} is not a finite number ({f})")
    return f


def integer(ds: Dataset, key: str | int, *, required: bool = False) -> int | None:
    v = number(ds, key, required=required)
    if v is None:
        return None
    if v != int(v):
        raise BadValue(f"{_name(_tag(key))} must be a whole number, found {v}")
    return int(v)


def sequence(ds: Dataset, key: str | int, *, required: bool = False) -> list[Dataset]:
    tag = _tag(key)
    if tag not in ds:
        if required:
            raise BadValue(f"missing required attribute {_name(tag)}")
        return []
    try:
        elem: DataElement = ds[tag]
    except Exception as err:  # pydicom cannot even split the sequence into items
        raise BadValue(f"{_name(tag)} cannot be read as a sequence: {err}") from None
    if elem.VR != "SQ":
        raise BadValue(f"{_name(tag)} has VR {elem.VR}, expected SQ")
    items = list(elem.value or [])
    if required and not items:
        raise BadValue(f"required sequence {_name(tag)} is empty")
    return items


# -- dates and times --------------------------------------------------------------------------
def parse_offset(s: str | None) -> timezone | None:
    if not s:
        return None
    m = _OFFSET.match(s.strip())
    if not m:
        raise BadValue(f"invalid UTC offset {s!r}")
    sign = -1 if m.group(1) == "-" else 1
    hours, minutes = int(m.group(2)), int(m.group(3))
    if hours > 14 or minutes > 59:
        raise BadValue(f"UTC offset out of range: {s!r}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_dt(value: str, *, default_tz: tzinfo, what: str = "date-time") -> datetime:
    """A DICOM DT (or DA+TM joined) -> aware datetime. No offset in the value: ``default_tz``."""
    m = _DT.match(value.strip())
    if not m:
        raise BadValue(f"invalid {what} {value[:40]!r}")
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        naive = datetime(
            int(y),
            int(mo or 1),
            int(d or 1),
            int(h or 0),
            int(mi or 0),
            int(s or 0),
            round(float(frac) * 1e6) if frac else 0,
        )
    except ValueError as err:
        raise BadValue(f"invalid {what} {value[:40]!r}: {err}") from None
    tz = parse_offset(off) if off else default_tz
    if hasattr(tz, "localize"):  # pragma: no cover - pytz is not used, zoneinfo is
        return tz.localize(naive)
    return naive.replace(tzinfo=tz)


def check_date(value: str, tag_name: str) -> str:
    m = _DA.match(value)
    if not m:
        raise BadValue(f"invalid value for VR DA: {value[:20]!r} in {tag_name}")
    try:
        date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as err:
        raise BadValue(f"invalid date {value!r} in {tag_name}: {err}") from None
    return value


def check_time(value: str, tag_name: str) -> str:
    v = value.replace(":", "")  # ACR-NEMA style HH:MM:SS still comes from old consoles
    if not _TM.match(v):
        raise BadValue(f"invalid value for VR TM: {value[:20]!r} in {tag_name}")
    return v


def dt_value(ds: Dataset, key: str, *, default_tz: tzinfo) -> datetime | None:
    """A DT attribute as an aware datetime (``default_tz`` when it carries no offset)."""
    tag, parts = _strings(ds, key, False)
    if parts is None:
        return None
    return parse_dt(_single(tag, parts), default_tz=default_tz, what=_name(tag))


def tm_with_date(
    tm_ds: Dataset, tm_key: str, date_ds: Dataset, date_keys: tuple[str, ...], *, default_tz: tzinfo
) -> datetime | None:
    """A TM attribute joined with the first present DA of ``date_keys`` (older headers)."""
    ttag, tparts = _strings(tm_ds, tm_key, False)
    if tparts is None:
        return None
    tm = check_time(_single(ttag, tparts), _name(ttag))
    for dk in date_keys:
        dtag, dparts = _strings(date_ds, dk, False)
        if dparts is not None:
            da = check_date(_single(dtag, dparts), _name(dtag))
            return parse_dt(da + tm, default_tz=default_tz, what=f"{_name(dtag)} + {_name(ttag)}")
    return None


def dataset_tz(ds: Dataset, site_tz: tzinfo) -> tzinfo:
    """The dataset's own TimezoneOffsetFromUTC if it has one, else the site's zone."""
    off = text(ds, "TimezoneOffsetFromUTC")
    return parse_offset(off) if off else site_tz


def utc_iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
