"""The APC Smart-UPS profile: a decoding table for every register, and the read plan."""

from __future__ import annotations

import tomllib

import pytest
from helpers import REPO

from suitemon.drivers.base import ProfileError
from suitemon.drivers.profile import decode, encode, load_profile, parse_profile
from suitemon.drivers.ups_apc import REQUIRED, check_profile, flatten

PROFILE = load_profile("apc_smart_ups")


# (point, raw registers as read, MSW first, expected decoded value)
TABLE = [
    # 0 (2): UPS status bits
    (
        "status",
        [0x0000, 0x0002],
        {
            "online": True,
            "on_battery": False,
            "output_off": False,
            "fault": False,
            "input_bad": False,
            "self_test": False,
            "output_off_pending": False,
            "eco_mode": False,
            "raw": 2,
        },
    ),
    (
        "status",
        [0x0000, 0x0044],
        {
            "online": False,
            "on_battery": True,
            "output_off": False,
            "fault": False,
            "input_bad": True,
            "self_test": False,
            "output_off_pending": False,
            "eco_mode": False,
            "raw": 0x44,
        },
    ),
    (
        "status",
        [0x0000, 0x0284],
        {
            "online": False,
            "on_battery": True,
            "output_off": False,
            "fault": False,
            "input_bad": False,
            "self_test": True,
            "output_off_pending": True,
            "eco_mode": False,
            "raw": 0x284,
        },
    ),
    (
        "status",
        [0x0001, 0x2030],
        {
            "online": False,
            "on_battery": False,
            "output_off": True,
            "fault": True,
            "input_bad": False,
            "self_test": False,
            "output_off_pending": False,
            "eco_mode": True,
            "raw": 0x12030,
        },
    ),
    # 18: simple signalling status
    ("signalling_status", [0x0001], {"power_failure": True, "shutdown_imminent": False, "raw": 1}),
    ("signalling_status", [0x0003], {"power_failure": True, "shutdown_imminent": True, "raw": 3}),
    # 20 (2): power system errors
    ("power_errors", [0x0000, 0x0001], {"overload": True, "over_temperature": False, "raw": 1}),
    ("power_errors", [0x0000, 0x0010], {"overload": False, "over_temperature": True, "raw": 16}),
    # 22: battery system errors
    (
        "battery_errors",
        [0x0004],
        {"battery_disconnected": False, "battery_needs_replacement": True, "raw": 4},
    ),
    (
        "battery_errors",
        [0x0001],
        {"battery_disconnected": True, "battery_needs_replacement": False, "raw": 1},
    ),
    # 24: runtime calibration status
    ("calibration_status", [0x0002], {"calibrating": True, "raw": 2}),
    ("calibration_status", [0x0001], {"calibrating": False, "raw": 1}),  # bit 0: pending, not running
    # 128 (2): runtime remaining, seconds, unsigned, MSW first
    ("runtime_s", [0x0000, 0x0E10], 3600),
    ("runtime_s", [0x0001, 0x0000], 65536),
    ("runtime_s", [0xFFFF, 0xFFFF], 4294967295),
    # 130: state of charge, % = raw / 512
    ("charge_pct", [0xC800], 100.0),
    ("charge_pct", [0x2100], 16.5),
    # 131: battery voltage, signed, V = raw / 32
    ("battery_v", [0x0369], 27.28125),
    ("battery_v", [0xFFE0], -1.0),
    # 135: battery temperature, signed, degC = raw / 128
    ("battery_temp_c", [0x0C80], 25.0),
    ("battery_temp_c", [0xFF00], -2.0),
    # 136: output real power (load), % = raw / 256
    ("load_pct", [0x2800], 40.0),
    ("load_pct", [0x7800], 120.0),
    # 142: output voltage, V = raw / 64
    ("output_v", [0x3980], 230.0),
    ("output_v", [0x0000], 0.0),
    # 151: input voltage, V = raw / 64, 0xFFFF = not available
    ("input_v", [0x3980], 230.0),
    ("input_v", [0x3A40], 233.0),
    ("input_v", [0xFFFF], None),
    # 155: main outlet group turn-off countdown, signed seconds, -1 = not active
    ("outlet_countdown_s", [0xFFFF], -1),
    ("outlet_countdown_s", [0x005A], 90),
    ("outlet_countdown_s", [0x0000], 0),
    # 159 / 163 / 167: switched outlet groups 0-2 turn-off countdowns, -1 = not active
    ("sog0_countdown_s", [0xFFFF], -1),
    ("sog1_countdown_s", [0x001E], 30),
    ("sog2_countdown_s", [0x0000], 0),
    # 1029: main outlet group shutdown delay setting; 1034 / 1039 / 1044: switched groups 0-2
    ("shutdown_delay_s", [0x005A], 90),
    ("sog0_shutdown_delay_s", [0x003C], 60),
    ("sog1_shutdown_delay_s", [0x005A], 90),
    ("sog2_shutdown_delay_s", [0x0258], 600),
    # 1538 (2): outlet command; (1<<3)|(1<<7)|(1<<8) = shutdown-and-return of the main group
    (
        "outlet_command",
        [0x0000, 0x0188],
        {
            "cancel": False,
            "on": False,
            "off": False,
            "shutdown": True,
            "reboot": False,
            "use_off_delay": True,
            "main_group": True,
            "switched_group_0": False,
            "switched_group_1": False,
            "switched_group_2": False,
            "raw": 0x188,
        },
    ),
    (
        "outlet_command",
        [0x0000, 0x0101],
        {
            "cancel": True,
            "on": False,
            "off": False,
            "shutdown": False,
            "reboot": False,
            "use_off_delay": False,
            "main_group": True,
            "switched_group_0": False,
            "switched_group_1": False,
            "switched_group_2": False,
            "raw": 0x101,
        },
    ),
    # 1540: simple signalling command
    ("signalling_command", [0x0001], {"request_shutdown": True, "raw": 1}),
    # 2054 (2) / 2056 (2): the 32-bit verification values, MSW first; a word swap shows here only
    ("test_u32", [0x1234, 0x5678], 0x12345678),
    ("test_u32", [0x5678, 0x1234], 0x56781234),
    ("test_s32", [0xFFFF, 0xFFFB], -5),
    ("test_s32", [0xFFFB, 0xFFFF], -262145),
    # 2058 / 2059: the byte-order test pattern
    ("test_u16", [0x1234], 0x1234),
    ("test_u16", [0x3412], 0x3412),
    ("test_s16", [0xFFFB], -5),
    ("test_s16", [0xFBFF], -1025),
]


@pytest.mark.parametrize("name,raw,expected", TABLE, ids=[f"{r[0]}-{i}" for i, r in enumerate(TABLE)])
def test_decoding_table(name, raw, expected):
    assert decode(PROFILE.point(name), raw) == expected


def test_table_covers_every_register_of_the_profile():
    assert {p.name for p in PROFILE.points} == {row[0] for row in TABLE}


@pytest.mark.parametrize(
    "name,raw,expected",
    [
        r
        for r in TABLE
        if r[2] is not None and not (isinstance(r[2], dict)) and r[0] not in ("test_u16", "test_u32")
    ],
)
def test_encoding_round_trips(name, raw, expected):
    p = PROFILE.point(name)
    assert decode(p, encode(p, expected)) == expected


def test_shutdown_and_return_command_word_is_0x188():
    p = PROFILE.point("outlet_command")
    assert encode(p, {"shutdown": True, "use_off_delay": True, "main_group": True}) == [
        0,
        (1 << 3) | (1 << 7) | (1 << 8),
    ]


def test_poll_plan_never_splits_an_item_and_reads_no_reserved_register():
    names, _ = check_profile(PROFILE)
    covered = {a for n in names for p in [PROFILE.point(n)] for a in range(p.address, p.end)}
    blocks = PROFILE.blocks(names)
    for table, start, count, _points in blocks:
        assert table == "holding"
        span = set(range(start, start + count))
        assert span <= covered, f"block {start}+{count} reads reserved registers {sorted(span - covered)}"
        for p in PROFILE.points:  # no item straddles a block edge
            inside = set(range(p.address, p.end)) & span
            assert not inside or inside == set(range(p.address, p.end)), p.name
    assert [b[1] for b in blocks] == [0, 18, 20, 24, 128, 135, 142, 151, 155]


def test_flatten_names_every_bit_and_the_required_values():
    decoded = {n: decode(PROFILE.point(n), [0] * PROFILE.point(n).count) for n in check_profile(PROFILE)[0]}
    values = flatten(PROFILE, decoded)
    assert set(REQUIRED) <= set(values)
    assert values["on_battery"] is False and values["runtime_s"] == 0


def test_a_profile_without_the_required_names_is_refused():
    bad = parse_profile(
        {
            "name": "x",
            "meta": {"poll": ["status"]},
            "points": {
                "status": {"table": "holding", "address": 0, "type": "u16", "bits": {"on_battery": 2}}
            },
        }
    )
    with pytest.raises(ProfileError, match="must provide shutdown_imminent, runtime_s, charge_pct"):
        check_profile(bad)


def test_two_points_giving_the_same_name_are_refused():
    bad = parse_profile(
        {
            "name": "x",
            "points": {
                "a": {"table": "holding", "address": 0, "type": "u16", "bits": {"on_battery": 1}},
                "b": {"table": "holding", "address": 1, "type": "u16", "bits": {"on_battery": 2}},
            },
        }
    )
    with pytest.raises(ProfileError, match="'on_battery' comes from both"):
        check_profile(bad)


def test_self_test_point_outside_its_block_is_refused():
    data = tomllib.loads((REPO / "drivers" / "profiles" / "apc_smart_ups.toml").read_text())
    data["meta"]["selftest"]["count"] = 2
    with pytest.raises(ProfileError, match=r"outside registers 2048..2049"):
        check_profile(parse_profile(data))
