"""Structure check of an encoded DICOM file: every element, item and fragment fits where it claims to.

pydicom reads a truncated file without complaint (a short last value, a missing tail of
pixel data) and only warns; suitemon must know, so this walks the encoding itself: tags
and lengths, into sequences and encapsulated pixel data, never decoding values. It is
cheap (a CT slice has ~150 elements; pixel data is skipped by its length).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, keyword_for_tag

from suitemon.daemon.dicom.values import BadValue

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xE000, 0xE00D, 0xE0DD
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
MAX_DEPTH = 32

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"


@dataclass(frozen=True)
class Layout:
    transfer_syntax: str
    sop_class: str
    sop_instance: str
    pixel_length: int | None  # bytes of native pixel data; None if absent or encapsulated
    has_pixels: bool


def _name(group: int, elem: int) -> str:
    kw = keyword_for_tag((group << 16) | elem) or ""
    return f"{kw} ({group:04X},{elem:04X})".strip()


class _Walker:
    def __init__(self, buf: bytes, implicit: bool, little: bool):
        self.buf = buf
        self.implicit = implicit
        self.e = "<" if little else ">"
        self.depth = 0
        self.pixel_length: int | None = None
        self.has_pixels = False

    def _u32(self, pos: int) -> int:
        return struct.unpack_from(self.e + "I", self.buf, pos)[0]

    def _tag(self, pos: int, end: int) -> tuple[int, int]:
        if end - pos < 8:
            raise BadValue(
                f"truncated: {end - pos} stray byte(s) where an element should start (offset {pos})"
            )
        return struct.unpack_from(self.e + "HH", self.buf, pos)

    def dataset(self, pos: int, end: int, depth: int, until_item_end: bool = False) -> int:
        self.depth = depth
        if depth > MAX_DEPTH:
            raise BadValue("sequences nested deeper than 32 levels")
        while pos < end:
            group, elem = self._tag(pos, end)
            if group == 0xFFFE:
                if until_item_end and elem == ITEM_END:
                    return pos + 8
                raise BadValue(f"unexpected delimiter (FFFE,{elem:04X}) at offset {pos}")
            pos = self.element(pos, end, group, elem, depth)
            self.depth = depth
        if until_item_end:
            raise BadValue("truncated: an item of undefined length has no item delimiter")
        return pos

    def element(self, pos: int, end: int, group: int, elem: int, depth: int) -> int:
        vr = None
        if self.implicit:
            length, hlen = self._u32(pos + 4), 8
        else:
            vr = bytes(self.buf[pos + 4 : pos + 6])
            if vr in LONG_VRS:
                length, hlen = self._u32(pos + 8), 12
            else:
                length, hlen = struct.unpack_from(self.e + "H", self.buf, pos + 6)[0], 8
        vpos = pos + hlen
        if vpos > end:
            raise BadValue(f"truncated: the header of {_name(group, elem)} is cut off")
        top_level_pixels = (group, elem) in PIXEL_TAGS and self.depth == 0
        if top_level_pixels:
            self.has_pixels = True
            self.pixel_length = None if length == UNDEFINED else length
        if length == UNDEFINED:
            if (group, elem) in PIXEL_TAGS:
                return self.fragments(vpos, end, group, elem)
            if vr in (None, b"SQ", b"UN"):
                # UN of undefined length is a sequence in implicit VR little endian (PS3.5 6.2.2)
                return self.sequence(vpos, end, None, depth, implicit=vr == b"UN" or self.implicit)
            raise BadValue(f"{_name(group, elem)} has undefined length but is not a sequence")
        stop = vpos + length
        if stop > end:
            raise BadValue(
                f"truncated: {_name(group, elem)} declares {length} bytes but only "
                f"{max(0, end - vpos)} remain"
            )
        if vr == b"SQ" or (vr is None and self._is_sq(group, elem)):
            self.sequence(vpos, end, stop, depth, implicit=self.implicit)
        return stop

    @staticmethod
    def _is_sq(group: int, elem: int) -> bool:
        try:
            return dictionary_VR((group << 16) | elem) == "SQ"
        except KeyError:
            return False

    def sequence(self, pos: int, end: int, stop: int | None, depth: int, implicit: bool) -> int:
        saved = self.implicit
        self.implicit = implicit
        try:
            limit = end if stop is None else stop
            while stop is None or pos < stop:
                group, elem = self._tag(pos, limit)
                if group != 0xFFFE:
                    raise BadValue(f"sequence item expected at offset {pos}, found ({group:04X},{elem:04X})")
                length = self._u32(pos + 4)
                pos += 8
                if elem == SEQ_END:
                    if stop is not None:
                        raise BadValue("sequence delimiter inside a sequence of defined length")
                    return pos
                if elem != ITEM:
                    raise BadValue(f"unexpected (FFFE,{elem:04X}) in a sequence")
                if length == UNDEFINED:
                    pos = self.dataset(pos, limit, depth + 1, until_item_end=True)
                else:
                    if pos + length > limit:
                        raise BadValue(
                            f"truncated: a sequence item declares {length} bytes but only "
                            f"{max(0, limit - pos)} remain"
                        )
                    self.dataset(pos, pos + length, depth + 1)
                    pos += length
            return pos
        finally:
            self.implicit = saved

    def fragments(self, pos: int, end: int, group: int, elem: int) -> int:
        while True:
            g, el = self._tag(pos, end)
            length = self._u32(pos + 4)
            if g != 0xFFFE:
                raise BadValue(f"encapsulated {_name(group, elem)}: item expected at offset {pos}")
            pos += 8
            if el == SEQ_END:
                return pos
            if length == UNDEFINED or pos + length > end:
                raise BadValue(f"truncated: a fragment of {_name(group, elem)} runs past the end of the file")
            pos += length


def layout(data: bytes) -> Layout:
    """Check the Part 10 file: preamble, meta, then the dataset's structure. Raises BadValue."""
    if len(data) == 0:
        raise BadValue("empty file (0 bytes): nothing reached the disk")
    if len(data) < 132 or data[128:132] != b"DICM":
        raise BadValue("not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble")
    meta = _Walker(data, implicit=False, little=True)
    pos, values = 132, {}
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        nxt = meta.element(pos, len(data), group, elem, 0)
        hlen = 12 if bytes(data[pos + 4 : pos + 6]) in LONG_VRS else 8
        values[elem] = bytes(data[pos + hlen : nxt]).rstrip(b"\x00 ").decode("ascii", "replace")
        pos = nxt
    ts = values.get(0x0010)
    if not ts:
        raise BadValue("file meta has no TransferSyntaxUID (0002,0010)")
    body, start = data, pos  # walked in place: copying a 512 KiB slice per file costs more than the walk
    if ts == DEFLATED:
        try:
            body, start = zlib.decompress(bytes(data[pos:]), -zlib.MAX_WBITS), 0
        except zlib.error as err:
            raise BadValue(f"deflated dataset cannot be inflated: {err}") from None
    walker = _Walker(body, implicit=ts == IMPLICIT_LE, little=ts != EXPLICIT_BE)
    walker.dataset(start, len(body), 0)
    return Layout(ts, values.get(0x0002, ""), values.get(0x0003, ""), walker.pixel_length, walker.has_pixels)
