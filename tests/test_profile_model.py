"""Register and I/O-module profiles are validated like the config: unknown keys, bad word order,
scale 0 and wrong types are refused with their key paths; a profile can extend a base profile."""

from __future__ import annotations

import pytest

from suitemon.drivers.base import ProfileError
from suitemon.drivers.io_module import load_io_profile
from suitemon.drivers.profile import load_profile, parse_profile

POINT = {"table": "holding", "address": 0, "type": "u16"}


@pytest.mark.parametrize(
    "data, where",
    [
        ({"points": {"t": {**POINT, "sacle": 10}}}, r"points\.t\.sacle: unknown key"),
        ({"pionts": {}}, r"pionts: unknown key"),
        (
            {"points": {"t": {**POINT, "type": "u32", "word_order": "middle"}}},
            r"points\.t\.word_order: Input should be 'big' or 'little'",
        ),
        ({"word_order": "little-endian", "points": {}}, r"word_order: Input should be 'big' or 'little'"),
        ({"points": {"t": {**POINT, "scale": 0}}}, r"points\.t\.scale: scale must not be 0"),
        (
            {"points": {"t": {**POINT, "scale": float("nan")}}},
            r"points\.t\.scale: Input should be a finite number",
        ),
        (
            {"points": {"t": {**POINT, "address": "12"}}},
            r"points\.t\.address: Input should be a valid integer",
        ),
        (
            {"points": {"t": {**POINT, "address": 70000}}},
            r"points\.t\.address: Input should be less than or equal to 65535",
        ),
        (
            {"points": {"t": {**POINT, "writable": "yes"}}},
            r"points\.t\.writable: Input should be a valid boolean",
        ),
        (
            {"points": {"t": {**POINT, "bits": {"fault": 40}}}},
            r"points\.t\.bits\.fault: Input should be less than or equal to 31",
        ),
        (
            {"points": {"t": {**POINT, "type": "f32", "bits": {"fault": 1}}}},
            r"points\.t: bits are for integer status words",
        ),
        ({"max_block": 0, "points": {}}, r"max_block: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_profile_is_refused_with_its_key_path(data, where):
    with pytest.raises(ProfileError, match=where):
        parse_profile(data, "bad")


def test_every_issue_is_reported_at_once():
    with pytest.raises(ProfileError) as err:
        parse_profile({"points": {"a": {**POINT, "scale": 0}, "b": {**POINT, "unit": 5}}}, "bad")
    assert "points.a.scale" in str(err.value) and "points.b.unit" in str(err.value)


def test_a_register_profile_extends_a_base_and_changes_only_what_differs(tmp_path):
    (tmp_path / "child.toml").write_text(
        'extends = "generic_io"\nname = "child"\n'
        '[points.temperature]\nscale = 100\n'
        '[points.extra]\ntable = "input"\naddress = 5\n'
    )
    base, child = load_profile("generic_io"), load_profile(str(tmp_path / "child.toml"))
    assert child.name == "child"
    assert child.point("temperature").scale == 100 and child.point("temperature").type == "s16"
    assert child.point("humidity") == base.point("humidity")
    assert child.point("extra").address == 5


def test_an_extension_is_validated_after_the_merge(tmp_path):
    (tmp_path / "child.toml").write_text('extends = "generic_io"\n[points.temperature]\nscale = 0\n')
    with pytest.raises(ProfileError, match=r"points\.temperature\.scale: scale must not be 0"):
        load_profile(str(tmp_path / "child.toml"))


def test_an_extension_cycle_and_a_missing_base_are_refused(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\nname = "a"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\nname = "b"\n')
    with pytest.raises(ProfileError, match="extends itself"):
        load_profile(str(tmp_path / "a.toml"))
    (tmp_path / "c.toml").write_text('extends = "no_such_profile"\n')
    with pytest.raises(ProfileError, match="no profile named 'no_such_profile'"):
        load_profile(str(tmp_path / "c.toml"))


def test_the_dio_modules_are_one_base_and_three_extensions():
    assert [
        (p.inputs, p.coils, p.latch, p.name)
        for p in map(load_io_profile, ("dio16", "dio16_latch", "dio32", "dio32_latch"))
    ] == [
        (16, 16, "none", "dio16"),
        (16, 16, "until_read", "dio16_latch"),
        (32, 16, "none", "dio32"),
        (32, 16, "until_read", "dio32_latch"),
    ]
    from helpers import REPO

    for name in ("dio16_latch", "dio32", "dio32_latch"):
        assert "extends =" in (REPO / "drivers" / "profiles" / f"{name}.toml").read_text()


def test_an_io_profile_reports_every_issue_with_its_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "dio16"\nname = "bad"\ninputs = "many"\nlatchh = "none"\n')
    with pytest.raises(ProfileError) as err:
        load_io_profile(str(bad))
    assert "inputs: Input should be a valid integer" in str(err.value) and "latchh: unknown key" in str(
        err.value
    )


def test_check_config_refuses_a_device_whose_profile_is_invalid(tmp_path):
    from suitemon.daemon.config import ConfigError, parse_config

    bad = tmp_path / "bad_io.toml"
    bad.write_text('extends = "generic_io"\n[points.temperature]\nscale = 0\n')
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "site": {"id": "p", "name": "p"},
                "devices": {"io": {"kind": "modbus_points", "transport": "tcp", "profile": str(bad)}},
            }
        )
    assert any(
        i.path == "devices.io.profile" and "points.temperature.scale: scale must not be 0" in i.message
        for i in err.value.issues
    ), err.value.issues
