"""The [dicom] section: every error reported with its key path, before any port is opened."""

from __future__ import annotations

import pytest

from suitemon.daemon.config import ConfigError, parse_config

BASE = {
    "site": {"id": "cfgtest", "name": "t"},
    "areas": {"scanner": {"name": "Scanner", "kind": "scanner_room"}},
}


def issues(dicom: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "dicom": dicom})
    return {i.path: i.message for i in e.value.issues}


def test_a_minimal_section_gets_safe_defaults():
    cfg = parse_config({**BASE, "dicom": {"allow": [{"ae_title": "PETCT1"}]}})
    d = cfg.dicom
    assert (d.bind, d.port, d.ae_title, d.fsync) == ("127.0.0.1", 11112, "SUITEMON", "all")
    assert d.reference_levels.national.ctdivol_mgy == 4.3 and d.activity_tolerance_pct == 5.0
    assert "1.2.840.10008.1.2.1" in d.transfer_syntaxes
    assert d.allowed("PETCT1", "10.1.2.3") and not d.allowed("PETCT2", "127.0.0.1")


def test_errors_name_their_keys():
    got = issues(
        {
            "allow": [{"ae_title": "WAY_TOO_LONG_AE_TITLE"}, {"ae_title": "OK", "address": "10.0.0.999"}],
            "bind": "everywhere",
            "fsync": "sometimes",
            "location": "roof",
            "transfer_syntaxes": ["1.2.x"],
            "reference_levels": {"local": [{"protocol": "", "ctdivol_mgy": -1}]},
            "colour": "blue",
        }
    )
    assert set(got) >= {
        "dicom.allow.0.ae_title",
        "dicom.allow.1.address",
        "dicom.bind",
        "dicom.fsync",
        "dicom.transfer_syntaxes",
        "dicom.reference_levels.local.0.protocol",
        "dicom.reference_levels.local.0.ctdivol_mgy",
        "dicom.colour",
    }
    assert got["dicom.colour"] == "unknown key (typo?)"


def test_an_empty_allow_list_is_refused_and_locations_must_exist():
    assert "dicom.allow" in issues({"allow": []})
    got = issues({"allow": [{"ae_title": "PETCT1"}], "location": "roof"})
    assert got == {"dicom.location": "unknown area 'roof'"}
