"""Decoding tables for the dispenser reference interface: raw registers in, values out.

The raw words are written out by hand (hex of kBq, Unix seconds, ASCII pairs), so these
tables check the profile and the decoder against the documented map, not against the encoder.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suitemon.drivers.base import ProfileError
from suitemon.drivers.dispenser import codes_of, decode_entry, decode_header, ring_of
from suitemon.drivers.profile import decode, encode, load_profile, parse_profile

PROFILE = load_profile("dispenser_reference")
RING = ring_of(PROFILE)
CODES = codes_of(PROFILE)
NOW = 1_800_000_200.0


def text_point(length=4):
    return parse_profile(
        {"points": {"t": {"table": "holding", "address": 0, "type": "ascii", "length": length}}}
    ).point("t")


@pytest.mark.parametrize(
    "words,expected",
    [
        ([0x5058, 0x2D30, 0x3034, 0x3200], "PX-0042"),  # NUL-terminated
        ([0x4142, 0x2020, 0x2020, 0x2020], "AB"),  # space-padded
        ([0x4142, 0x0043, 0x4400, 0x0000], "AB"),  # text ends at the first NUL
        ([0x0000, 0x0000, 0x0000, 0x0000], ""),
        ([0x41FF, 0x4200, 0x0000, 0x0000], "A\ufffdB"),  # a non-ASCII byte stays visible
    ],
)
def test_ascii_points_decode(words, expected):
    assert decode(text_point(), words) == expected


def test_ascii_points_encode_round_trip_and_refuse_overflow():
    p = text_point()
    assert encode(p, "PX-0042") == [0x5058, 0x2D30, 0x3034, 0x3200]
    assert decode(p, encode(p, "ACC12345")) == "ACC12345"
    with pytest.raises(ValueError):
        encode(p, "123456789")


@pytest.mark.parametrize(
    "point,message",
    [
        ({"table": "holding", "address": 0, "type": "ascii"}, "length"),
        ({"table": "holding", "address": 0, "type": "ascii", "length": 61}, "length"),
        ({"table": "coil", "address": 0, "type": "ascii", "length": 2}, "type 'bool'"),
        ({"table": "holding", "address": 0, "type": "u16", "length": 2}, "ascii points only"),
    ],
)
def test_bad_ascii_points_are_refused(point, message):
    with pytest.raises(ProfileError, match=message):
        parse_profile({"points": {"t": point}})


def read_block(profile, words: dict[int, int]):
    """What ModbusDevice.read_points does, on a dict of raw registers."""
    out = {}
    for _table, start, count, points in profile.blocks():
        block = [words.get(a, 0) for a in range(start, start + count)]
        for p in points:
            out[p.name] = decode(p, block[p.address - start : p.end - start])
    return out


HEADER = {
    0: 1,
    1: 3,
    2: 0b100101,
    3: 8,
    4: 0x0001,
    5: 0x1170,  # v1, injecting, spill+door+residual, 8 slots, 70000
    6: 1,
    7: 1,
    8: 0x00BC,
    9: 0x614E,
    10: 0x6B49,
    11: 0xD200,  # F-18 FDG, 12345.678 MBq at 1800000000
    12: 0x0001,
    13: 0x0146,  # half-life 6586.2 s
    14: 0,
    15: 1042,
    16: 0x5058,
    17: 0x2D30,
    18: 0x3034,
    19: 0x3200,  # job 1042, PX-0042
    24: 0x4143,
    25: 0x4339,
    32: 0x5045,
    33: 0x544F,
    34: 0x4E43,  # ACC9, PETONC
    44: 3,
    45: 725,
    46: 0x0005,
    47: 0x5730,  # room 3, 72.5 kg, 350 MBq
    48: 0,
    49: 1041,
    50: 0x0005,
    51: 0xB04D,
    52: 0x6B49,
    53: 0xCE18,  # last: 1041, 372.813 MBq at 1799999000
    54: 0xFFFF,
    55: 0xFFFF,  # residual not measured
}


def test_header_decodes_to_the_documented_values():
    v = decode_header(read_block(PROFILE, HEADER), CODES)
    assert v["unit_state"] == "injecting"
    assert v["errors"] == {
        "spill": True,
        "air_in_line": False,
        "door_open": True,
        "vial_low": False,
        "calibration_due": False,
        "residual_high": True,
        "raw": 37,
    }
    assert v["jobs_completed"] == 70000
    assert (v["vial_radionuclide"], v["vial_radiopharmaceutical"]) == ("F-18", "FDG")
    assert v["vial_activity_mbq"] == pytest.approx(12345.678)
    assert v["vial_calibrated_at"] == "2027-01-15T08:00:00Z"
    assert v["vial_half_life_s"] == pytest.approx(6586.2)
    assert v["job"] == {
        "job": 1042,
        "patient_ref": "PX-0042",
        "accession": "ACC9",
        "exam": "PETONC",
        "operator": None,
        "room_number": 3,
        "weight_kg": 72.5,
        "prescribed_mbq": 350.0,
    }
    assert v["last"] == {
        "job": 1041,
        "measured_mbq": pytest.approx(372.813),
        "administered_at": "2027-01-15T07:43:20Z",
        "residual_mbq": None,
    }


@pytest.mark.parametrize(
    "changes,expected",
    [
        ({1: 0, 2: 0, 14: 0, 15: 0, 48: 0, 49: 0}, {"unit_state": "idle", "job": None, "last": None}),
        ({1: 9}, {"unit_state": "unknown:9"}),
        ({6: 0, 7: 0, 10: 0, 11: 0}, {"vial_radionuclide": None, "vial_calibrated_at": None}),
        ({12: 0, 13: 0}, {"vial_half_life_s": None}),
    ],
)
def test_header_edge_values(changes, expected):
    v = decode_header(read_block(PROFILE, {**HEADER, **changes}), CODES)
    for k, x in expected.items():
        assert v[k] == x, k


def test_the_whole_header_is_read_in_one_request_and_ring_entries_fit_one_each():
    assert [(t, s, c) for t, s, c, _ in PROFILE.blocks()] == [("holding", 0, 56)]
    assert max(p.end for p in RING.entry.points) <= RING.stride <= 60
    assert (RING.base, RING.stride, RING.slots) == (100, 50, 8)
    assert [RING.slot_address(k) for k in (1, 2, 8, 9, 17)] == [100, 150, 450, 100, 100]


ENTRY = {
    0: 0x0001,
    1: 0x1170,
    2: 0,
    3: 1042,  # seq 70000, job 1042
    4: 0x5058,
    5: 0x2D30,
    6: 0x3034,
    7: 0x3200,  # PX-0042
    12: 0x4143,
    13: 0x4339,
    20: 0x5045,
    21: 0x544F,
    22: 0x4E43,  # ACC9, PETONC
    28: 0x4F50,
    29: 0x3700,  # operator OP7
    32: 3,
    33: 725,
    34: 1,
    35: 1,  # room 3, 72.5 kg, F-18, FDG
    36: 0x0004,
    37: 0xE390,  # prescribed 320.4 MBq
    38: 0x0005,
    39: 0xB04D,
    40: 0x6B49,
    41: 0xCE18,  # measured 372.813 at 1799999000
    42: 0x6B49,
    43: 0xCFA8,  # administered 1799999400
    44: 0x0000,
    45: 0x09C4,
    46: 0x6B49,
    47: 0xCFA8,  # residual 2.5 MBq at 1799999400
    48: 0,
    49: 0,  # half-life not given
}
GOOD = {
    "seq": 70000,
    "job": 1042,
    "patient_ref": "PX-0042",
    "accession": "ACC9",
    "exam": "PETONC",
    "operator": "OP7",
    "room_number": 3,
    "room": "uptake3",
    "weight_kg": 72.5,
    "radionuclide": "F-18",
    "radiopharmaceutical": "FDG",
    "prescribed_mbq": 320.4,
    "measured_mbq": 372.813,
    "measured_at": 1_799_999_000.0,
    "administered_at": 1_799_999_400.0,
    "residual_mbq": 2.5,
    "residual_at": 1_799_999_400.0,
    "half_life_s": None,
    "issues": [],
}


@pytest.mark.parametrize(
    "changes,expected,issue",
    [
        ({}, {}, None),
        ({34: 9}, {"radionuclide": None}, "radionuclide: unknown code 9"),
        ({35: 99}, {"radiopharmaceutical": None}, "radiopharmaceutical: unknown code 99"),
        ({32: 7}, {"room": None, "room_number": 7}, "room: number 7 is not mapped"),
        ({4: 0x50FF}, {"patient_ref": "P?-0042"}, "patient_ref: not printable ASCII"),
        ({4: 0, 5: 0, 6: 0, 7: 0}, {"patient_ref": None}, "patient_ref: empty"),
        ({44: 0xFFFF, 45: 0xFFFF}, {"residual_mbq": None, "residual_at": None}, None),
        ({48: 0x0001, 49: 0x0146}, {"half_life_s": pytest.approx(6586.2)}, None),
        ({42: 0x6B49, 43: 0xD278 + 600}, {}, "administered_at: "),  # 10 min ahead of our clock
        ({42: 0, 43: 0}, {"administered_at": None}, "administered_at: not set"),
        ({38: 0, 39: 0}, {"measured_mbq": 0.0}, "measured_mbq: zero"),
        ({33: 0}, {"weight_kg": None}, None),
    ],
)
def test_ring_entries_decode_and_name_every_problem(changes, expected, issue):
    raw = read_block(RING.entry, {**ENTRY, **changes})
    e = decode_entry(raw, CODES, {1: "uptake1", 3: "uptake3"}, NOW, clock_skew_s=300)
    want = {**GOOD, **expected}
    got_issues = e.pop("issues")
    want.pop("issues")
    assert e == {k: (pytest.approx(v) if isinstance(v, float) else v) for k, v in want.items()}
    if issue is None:
        assert got_issues == []
    else:
        assert any(i.startswith(issue) for i in got_issues), got_issues


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF), min_size=50, max_size=50))
def test_any_ring_entry_decodes_without_raising_and_names_what_is_wrong(words):
    raw = read_block(RING.entry, dict(enumerate(words)))
    e = decode_entry(raw, CODES, {1: "uptake1"}, NOW)
    assert isinstance(e["issues"], list)
    for f in ("patient_ref", "accession", "exam", "operator"):
        assert e[f] is None or (isinstance(e[f], str) and e[f].isprintable() and e[f].isascii())
    if raw["radionuclide"] not in CODES.radionuclide:
        assert e["radionuclide"] is None and any(i.startswith("radionuclide") for i in e["issues"])
    if e["room"] is None:
        assert any(i.startswith("room") for i in e["issues"])
    if e["administered_at"] is not None and e["administered_at"] > NOW + 300:
        assert any(i.startswith("administered_at") for i in e["issues"])


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=16))
def test_ascii_round_trip_for_printable_text(text):
    p = text_point(8)
    assert decode(p, encode(p, text)) == text.rstrip(" ")
