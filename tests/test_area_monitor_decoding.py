"""Modbus area monitor decoding as tables of raw registers: both float32 word orders, flags, bad values."""

from __future__ import annotations

import math
import struct

import pytest

from suitemon.drivers.area_monitor_modbus import interpret, monitor_profile
from suitemon.drivers.base import ProfileError
from suitemon.drivers.profile import decode, encode, parse_profile


def f32_words(x: float) -> tuple[int, int]:
    raw = struct.unpack(">I", struct.pack(">f", x))[0]
    return raw >> 16, raw & 0xFFFF


def regs(rate_words, status, dose_words):
    return [*rate_words, status, *dose_words]


def decode_block(profile, registers):
    """What the driver does with one read of input registers 0..4."""
    return {p.name: decode(p, registers[p.address : p.end]) for p in profile.points}


HI_32_5, LO_32_5 = f32_words(32.5)  # 0x4202, 0x0000
HI_0_1, LO_0_1 = f32_words(0.1)  # 0x3DCC, 0xCCCD
HI_D, LO_D = f32_words(1234.5)

TABLE = [
    # name, device word order, registers 0..4, rate, over, fault, high, low, device dose
    (
        "big: 32.5 uSv/h, quiet",
        None,
        regs((HI_32_5, LO_32_5), 0, (HI_D, LO_D)),
        32.5,
        False,
        False,
        False,
        False,
        1234.5,
    ),
    (
        "big: 0.1 background",
        "big",
        regs((HI_0_1, LO_0_1), 0, (HI_D, LO_D)),
        0.1,
        False,
        False,
        False,
        False,
        1234.5,
    ),
    (
        "little: 32.5 (CDAB)",
        "little",
        regs((LO_32_5, HI_32_5), 0, (LO_D, HI_D)),
        32.5,
        False,
        False,
        False,
        False,
        1234.5,
    ),
    (
        "little: 0.1 (CDAB)",
        "little",
        regs((LO_0_1, HI_0_1), 0, (LO_D, HI_D)),
        0.1,
        False,
        False,
        False,
        False,
        1234.5,
    ),
    # 0.1 sent ABCD but read CDAB is 0xCCCD3DCC, a negative number: a fault, never a plausible rate.
    (
        "wrong word order shows as a fault",
        "little",
        regs((HI_0_1, LO_0_1), 0, (LO_D, HI_D)),
        None,
        False,
        True,
        False,
        False,
        1234.5,
    ),
    (
        "instrument alarm bits",
        None,
        regs((HI_32_5, LO_32_5), 0b00011, (HI_D, LO_D)),
        32.5,
        False,
        False,
        True,
        True,
        1234.5,
    ),
    (
        "over-range bit",
        None,
        regs(f32_words(10000.0), 0b00100, (HI_D, LO_D)),
        10000.0,
        True,
        False,
        False,
        False,
        1234.5,
    ),
    (
        "detector fault bit",
        None,
        regs(f32_words(0.0), 0b01000, (HI_D, LO_D)),
        0.0,
        False,
        True,
        False,
        False,
        1234.5,
    ),
    (
        "HV fault bit is a detector fault",
        None,
        regs(f32_words(0.0), 0b10000, (HI_D, LO_D)),
        0.0,
        False,
        True,
        False,
        False,
        1234.5,
    ),
    (
        "NaN is a fault, not a number",
        None,
        regs((0x7FC0, 0x0000), 0, (HI_D, LO_D)),
        None,
        False,
        True,
        False,
        False,
        1234.5,
    ),
    (
        "+inf is a fault",
        None,
        regs((0x7F80, 0x0000), 0, (HI_D, LO_D)),
        None,
        False,
        True,
        False,
        False,
        1234.5,
    ),
    (
        "negative rate is a fault",
        None,
        regs(f32_words(-1.0), 0, (HI_D, LO_D)),
        None,
        False,
        True,
        False,
        False,
        1234.5,
    ),
    (
        "NaN integrated dose is dropped",
        None,
        regs((HI_0_1, LO_0_1), 0, (0x7FC0, 0)),
        0.1,
        False,
        False,
        False,
        False,
        None,
    ),
]


@pytest.mark.parametrize(
    "name,order,registers,rate,over,fault,high,low,dose", TABLE, ids=[t[0] for t in TABLE]
)
def test_decode_reference_profile(name, order, registers, rate, over, fault, high, low, dose):
    profile = monitor_profile("area_monitor_reference", order)
    v = interpret(profile, decode_block(profile, registers))
    if rate is None:
        assert v["dose_rate_usv_h"] is None
    else:
        assert v["dose_rate_usv_h"] == pytest.approx(rate, rel=1e-6)
    assert (v["over_range"], v["detector_fault"], v["instrument_high_alarm"], v["instrument_low_alarm"]) == (
        over,
        fault,
        high,
        low,
    )
    assert (v["fault_reason"] is not None) == fault
    if dose is None:
        assert v["device_dose_usv"] is None
    else:
        assert v["device_dose_usv"] == pytest.approx(dose)


@pytest.mark.parametrize(
    "profile_order,device_order,expect_first_word",
    [
        ("big", None, HI_32_5),
        ("big", "little", LO_32_5),
        ("little", None, LO_32_5),
        ("little", "big", HI_32_5),
    ],
)
def test_device_word_order_overrides_the_profile(tmp_path, profile_order, device_order, expect_first_word):
    path = tmp_path / "vendor.toml"
    path.write_text(
        f'name = "vendor"\nword_order = "{profile_order}"\n'
        '[points.dose_rate]\ntable = "holding"\naddress = 100\ntype = "f32"\nunit = "uSv/h"\n'
    )
    profile = monitor_profile(str(path), device_order)
    p = profile.point("dose_rate")
    words = encode(p, 32.5)
    assert words[0] == expect_first_word
    assert interpret(profile, {"dose_rate": decode(p, words)})["dose_rate_usv_h"] == 32.5


@pytest.mark.parametrize(
    "unit,raw,expected",
    [
        ("uSv/h", 7.5, 7.5),
        ("nSv/h", 100.0, 0.1),
        ("mSv/h", 0.025, 25.0),
        ("mR/h", 1.0, 10.0),
        ("uR/h", 10.0, 0.1),
    ],
)
def test_rate_units_convert_to_usv_h(unit, raw, expected):
    profile = parse_profile(
        {"points": {"dose_rate": {"table": "input", "address": 0, "type": "f32", "unit": unit}}}
    )
    assert interpret(profile, {"dose_rate": raw})["dose_rate_usv_h"] == pytest.approx(expected)


def test_scaled_integer_rate_and_flags_as_discrete_inputs():
    profile = parse_profile(
        {
            "points": {
                "dose_rate": {"table": "input", "address": 0, "type": "u16", "scale": 100, "unit": "uSv/h"},
                "over_range": {"table": "discrete", "address": 0},
                "detector_fault": {"table": "discrete", "address": 1},
            }
        }
    )
    raw = {p.name: decode(p, w) for p, w in zip(profile.points, ([750], [True], [False]), strict=True)}
    v = interpret(profile, raw)
    assert (v["dose_rate_usv_h"], v["over_range"], v["detector_fault"]) == (7.5, True, False)


@pytest.mark.parametrize(
    "points,why",
    [
        (
            {"rate": {"table": "input", "address": 0, "type": "f32", "unit": "uSv/h"}},
            "needs a 'dose_rate' point",
        ),
        ({"dose_rate": {"table": "input", "address": 0, "type": "f32", "unit": "Gy"}}, "unit 'Gy'"),
        ({"dose_rate": {"table": "input", "address": 0, "type": "f32"}}, "unit None"),
        ({"dose_rate": {"table": "discrete", "address": 0}}, "must be a number"),
        (
            {
                "dose_rate": {"table": "input", "address": 0, "type": "f32", "unit": "uSv/h"},
                "integrated_dose": {"table": "input", "address": 2, "type": "f32", "unit": "Sv/h"},
            },
            "integrated_dose unit",
        ),
    ],
)
def test_profiles_missing_what_the_driver_needs_are_refused(tmp_path, points, why):
    import json

    path = tmp_path / "bad.toml"
    lines = ['name = "bad"']
    for name, p in points.items():
        lines.append(f"[points.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in p.items()]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProfileError, match=why):
        monitor_profile(str(path))


def test_reference_profile_reads_in_one_request():
    profile = monitor_profile("area_monitor_reference")
    assert [(t, start, count) for t, start, count, _ in profile.blocks()] == [("input", 0, 5)]
    assert not math.isnan(
        interpret(profile, decode_block(profile, regs(f32_words(1.0), 0, f32_words(0.0))))["dose_rate_usv_h"]
    )
