"""The upsd line decoder and the NUT -> shared UPS model mapping (no sockets: pure decoding).

Fuzzed: any bytes upsd (or noise) sends either decode or raise NutFrameError (a DriverError),
and every value we quote decodes back to itself.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suitemon.drivers.base import CommError, DeviceException, DriverError
from suitemon.drivers.nut_protocol import (
    NutError,
    NutFrameError,
    NutStale,
    name,
    parse_var,
    quote,
    raise_for_error,
    split_line,
)
from suitemon.drivers.ups_nut import normalise


def test_split_line_unquotes_values_with_escapes():
    assert split_line(b'VAR pet ups.status "OB LB"\n') == ["VAR", "pet", "ups.status", "OB LB"]
    assert split_line(b'VAR pet ups.mfr "say \\"hi\\" \\\\ ok"\n') == [
        "VAR",
        "pet",
        "ups.mfr",
        'say "hi" \\ ok',
    ]
    assert split_line(b'VAR pet x ""') == ["VAR", "pet", "x", ""]


@pytest.mark.parametrize(
    "raw",
    [
        b'VAR pet x "open',
        b'VAR pet x "a\\',
        b'VAR pet x "a"b',
        b"VAR pet x a\"b",
        b"",
        b"   \n",
        b"VAR pet x \xff\xfe",
        b"VAR\x00pet",
        b"VAR pet\rx",
        b"A" * 5000,
    ],
)
def test_split_line_rejects_garbled_lines(raw):
    with pytest.raises(NutFrameError):
        split_line(raw)


def test_err_answers_map_to_refusal_or_lost_ups():
    with pytest.raises(NutError) as e:
        raise_for_error(["ERR", "ACCESS-DENIED"], "INSTCMD pet shutdown.return")
    assert isinstance(e.value, DeviceException) and e.value.nut_code == "ACCESS-DENIED"
    for code in ("DATA-STALE", "DRIVER-NOT-CONNECTED"):
        with pytest.raises(NutStale) as s:
            raise_for_error(["ERR", code], "LIST VAR pet")
        assert isinstance(s.value, CommError)
    raise_for_error(["OK"], "x")  # not an error


def test_names_we_send_cannot_carry_a_second_command():
    assert name("shutdown.return", "command") == "shutdown.return"
    for bad in ("shutdown.return\nFSD pet", "a b", "", "x" * 100):
        with pytest.raises(ValueError):
            name(bad, "command")
    with pytest.raises(ValueError):
        quote("pw\nINSTCMD pet load.off")


def test_parse_var_checks_the_ups_name():
    assert parse_var(["VAR", "pet", "battery.charge", "97"], "pet") == ("battery.charge", "97")
    with pytest.raises(NutFrameError):
        parse_var(["VAR", "other", "battery.charge", "97"], "pet")


def test_nut_status_flags_map_to_the_shared_model():
    v = normalise(
        {
            "ups.status": "OB LB RB OVER",
            "battery.charge": "12",
            "battery.runtime": "95",
            "ups.load": "61",
            "input.voltage": "0.0",
            "ups.timer.shutdown": "-1",
        }
    )
    assert v["on_battery"] and v["input_bad"] and v["shutdown_imminent"]
    assert v["battery_needs_replacement"] and v["overload"] and not v["online"]
    assert (v["charge_pct"], v["runtime_s"], v["load_pct"], v["outlet_countdown_s"]) == (12.0, 95.0, 61.0, -1)
    assert normalise({"ups.status": "OL FSD"})["shutdown_imminent"]
    assert normalise({"ups.status": "OL BYPASS"})["bypass"]
    missing = normalise({"ups.status": "OL"})
    assert missing["runtime_s"] is None and missing["charge_pct"] is None  # unknown, never a guess


def test_calibration_on_mains_is_not_a_mains_loss_but_unknown_input_is():
    good = normalise({"ups.status": "OB CAL", "input.voltage": "229.8"})
    assert good["on_battery"] and good["calibrating"] and not good["input_bad"]
    dead = normalise({"ups.status": "OB CAL", "input.voltage": "3.0"})
    assert dead["input_bad"]
    unknown = normalise({"ups.status": "OB CAL"})
    assert unknown["input_bad"], "without input voltage a calibration cannot prove mains is good"
    test = normalise({"ups.status": "OB", "ups.test.result": "In progress", "input.voltage": "231"})
    assert test["self_test"] and not test["input_bad"]


def test_status_not_yet_known_is_a_failed_poll():
    for vars_ in ({}, {"ups.status": "WAIT"}, {"ups.status": ""}):
        with pytest.raises(NutStale):
            normalise(vars_)
    for bad in ({"battery.charge": "full"}, {"battery.runtime": "nan"}, {"ups.timer.shutdown": "inf"}):
        with pytest.raises(NutFrameError):
            normalise({"ups.status": "OL", **bad})


@given(st.binary(max_size=300))
def test_fuzz_any_bytes_decode_or_raise_a_frame_error(raw):
    try:
        words = split_line(raw)
    except NutFrameError:
        return
    assert words and all(isinstance(w, str) for w in words)


@given(
    st.text(
        alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=60
    )
)
def test_fuzz_quoted_values_round_trip(value):
    assert split_line(f"VAR pet x {quote(value)}\n".encode()) == ["VAR", "pet", "x", value]


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "ups.status",
                "battery.charge",
                "battery.runtime",
                "ups.load",
                "input.voltage",
                "ups.timer.shutdown",
                "ups.test.result",
            ]
        ),
        st.text(max_size=12),
        max_size=7,
    )
)
def test_fuzz_normalise_never_crashes(vars_):
    try:
        v = normalise(vars_)
    except DriverError:
        return
    assert isinstance(v["on_battery"], bool) and isinstance(v["shutdown_imminent"], bool)
