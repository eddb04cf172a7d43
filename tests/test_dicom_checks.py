"""Dose checks as tables: reference levels, decay-corrected reconciliation, start times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as s

from suitemon.daemon.dicom.checks import (
    Dispensed,
    check_ct,
    check_start_times,
    decay,
    levels_for,
    pick_dispensed,
    reconcile,
)
from suitemon.daemon.dicom.config import DicomConfig
from suitemon.daemon.dicom.dose_pet import PetHeader
from suitemon.daemon.dicom.dose_sr import CtDoseReport, CtEvent

T0 = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)
F18 = 6586.2


def cfg(**kw) -> DicomConfig:
    return DicomConfig(allow=[{"ae_title": "PETCT1"}], **kw)


def report(*events, total=None) -> CtDoseReport:
    evs = tuple(CtEvent(t, c, d, "body", p, None) for t, c, d, p in events)
    return CtDoseReport("1.2.3", evs, total, len(evs))


def header(mbq, at=T0, half=F18) -> PetHeader:
    return PetHeader(mbq, "Bq", at, half, "F-18", 70.0)


def dispensed(
    mbq, at=T0, residual=None, calibration_at=None, accession="A1", patient_ref="p1", rid="r1"
) -> Dispensed:
    return Dispensed(
        rid, "ev-" + rid, patient_ref, accession, "uptake1", "F-18", mbq, residual, at, calibration_at
    )


def test_decay_halves_in_one_half_life_and_is_reversible():
    assert decay(400.0, T0, T0 + timedelta(seconds=F18), F18) == pytest.approx(200.0)
    assert decay(200.0, T0 + timedelta(seconds=F18), T0, F18) == pytest.approx(400.0)


@given(a=s.floats(1, 5000), minutes=s.floats(-600, 600))
def test_decay_there_and_back_is_the_identity(a, minutes):
    t1 = T0 + timedelta(minutes=minutes)
    assert decay(decay(a, T0, t1, F18), t1, T0, F18) == pytest.approx(a, rel=1e-9)


LEVELS = {
    "local": [
        {"protocol": "PET-CT Half Body*", "ctdivol_mgy": 5.0, "dlp_mgycm": 450.0},
        {"protocol": "brain*", "ctdivol_mgy": 40.0},
    ],
    "national": {"ctdivol_mgy": 4.3, "dlp_mgycm": 400.0},
}


@pytest.mark.parametrize(
    "protocol,source,ctdi,dlp",
    [
        ("PET-CT Half Body", "local", 5.0, 450.0),
        ("pet-ct  half body (low dose)", "local", 5.0, 450.0),  # case and spacing ignored, wildcard
        ("Brain PET", "local", 40.0, 400.0),  # unset DLP falls back to national
        ("Whole body", "national", 4.3, 400.0),
        (None, "national", 4.3, 400.0),
    ],
)
def test_reference_levels_local_first_then_national(protocol, source, ctdi, dlp):
    lv = levels_for(protocol, cfg(reference_levels=LEVELS).reference_levels)
    assert (lv.source, lv.ctdivol_mgy, lv.dlp_mgycm) == (source, ctdi, dlp)


@pytest.mark.parametrize(
    "events,total,status,exceeded",
    [
        ([("constant_angle", 0.1, 5.0, None), ("spiral", 4.9, 300.0, None)], 305.0, "ok", []),
        (
            [("constant_angle", 9.0, 5.0, None), ("spiral", 4.9, 300.0, None)],
            305.0,
            "ok",
            [],
        ),  # scouts not compared
        ([("spiral", 5.2, 300.0, None)], 300.0, "exceeded", ["ctdivol_mgy"]),
        ([("spiral", 4.0, 300.0, None), ("spiral", 3.0, 200.0, None)], 500.0, "exceeded", ["dlp_mgycm"]),
        (
            [("spiral", 4.0, 300.0, None), ("spiral", 3.0, 200.0, None)],
            None,
            "exceeded",
            ["dlp_mgycm"],
        ),  # summed
    ],
)
def test_ct_check_against_the_matched_levels(events, total, status, exceeded):
    ev = [(t, c, d, p or "PET-CT Half Body") for t, c, d, p in events]
    r = check_ct([report(*ev, total=total)], [], cfg(reference_levels=LEVELS).reference_levels)
    assert r.status == status
    assert [x["quantity"] for x in r.exceeded] == exceeded
    assert r.dlp_total_source == ("report" if total is not None else "sum_of_events")


def test_ct_check_without_a_report_is_not_checked_not_ok():
    r = check_ct([], ["PET-CT Half Body"], cfg().reference_levels)
    assert r.status == "not_checked" and r.reason == "no CT dose report received"


@pytest.mark.parametrize(
    "header_factor,status",
    [
        (1.0, "ok"),
        (1.02, "ok"),
        (0.98, "ok"),
        (1.049, "ok"),
        (1.051, "mismatch"),
        (1.10, "mismatch"),
        (0.90, "mismatch"),
    ],
)
def test_reconciliation_is_decay_corrected_with_a_5_percent_tolerance(header_factor, status):
    # 500 MBq measured at calibration 45 minutes before the injection the header names.
    d = dispensed(500.0, at=T0, calibration_at=T0 - timedelta(minutes=45))
    expected = 500.0 * 2 ** (-45 * 60 / F18)
    r = reconcile(header(expected * header_factor), d, tolerance_pct=5.0)
    assert r.status == status
    assert r.expected_mbq == pytest.approx(expected, abs=1e-3)
    assert r.deviation_pct == pytest.approx(100 * (header_factor - 1), abs=0.01)
    assert r.half_life_source == "header"


def test_reconciliation_uses_net_activity_and_says_why_it_cannot_run():
    assert reconcile(header(350.0), dispensed(360.0, residual=10.0), tolerance_pct=5).status == "ok"
    assert reconcile(header(350.0), None, tolerance_pct=5).status == "no_dispense_record"
    assert reconcile(None, dispensed(350.0), tolerance_pct=5).status == "no_header_activity"
    no_half = PetHeader(350.0, "Bq", T0, None, None, None)
    d = Dispensed("r", "e", "p", "A", "u", None, 350.0, None, T0, None)
    assert reconcile(no_half, d, tolerance_pct=5).status == "no_half_life"
    r = reconcile(no_half, d, tolerance_pct=5, report_half_life_s=F18)
    assert (r.status, r.half_life_source) == ("ok", "dose_report")
    table = Dispensed("r", "e", "p", "A", "u", "Ga-68", 150.0, None, T0 - timedelta(minutes=67.83), None)
    r = reconcile(PetHeader(75.0, "Bq", T0, None, None, None), table, tolerance_pct=5)
    assert (r.status, r.half_life_source) == ("ok", "table")


def test_the_dispensing_record_is_found_by_accession_else_patient_ref_nearest_in_time():
    recs = [
        dispensed(300, T0 - timedelta(hours=30), rid="old"),
        dispensed(310, T0 - timedelta(minutes=62), rid="right"),
        dispensed(320, T0 - timedelta(minutes=61), accession="OTHER", rid="other-acc"),
        dispensed(330, T0 - timedelta(minutes=59), accession=None, patient_ref="p9", rid="by-ref"),
    ]
    assert pick_dispensed(recs, accession="A1", patient_ref="p1", around=T0, window_h=12).record_id == "right"
    assert (
        pick_dispensed(recs, accession=None, patient_ref="p9", around=T0, window_h=12).record_id == "by-ref"
    )
    assert pick_dispensed(recs, accession="NONE", patient_ref="p1", around=T0, window_h=12) is None
    assert (
        pick_dispensed(recs, accession="A1", patient_ref="p1", around=T0 + timedelta(hours=40), window_h=12)
        is None
    )


@pytest.mark.parametrize(
    "shift_min,status", [(0, "ok"), (4.9, "ok"), (-5.0, "ok"), (5.1, "mismatch"), (-12, "mismatch")]
)
def test_start_time_mismatch_beyond_tolerance(shift_min, status):
    r = check_start_times(T0 + timedelta(minutes=shift_min), T0, 5.0)
    assert r.status == status and r.difference_min == pytest.approx(shift_min)
    assert check_start_times(None, T0, 5.0).status == "not_checked"


def test_the_dispensers_own_net_activity_is_preferred():
    # Assay 520 MBq at calibration, 10 MBq left in the syringe; the dispenser says 495.2 MBq went in.
    d = Dispensed(
        "r",
        "e",
        "p1",
        "A1",
        "uptake1",
        "F-18",
        520.0,
        10.0,
        T0,
        T0 - timedelta(minutes=5),
        administered_mbq=495.2,
        half_life_s=F18,
    )
    r = reconcile(header(495.2), d, tolerance_pct=5)
    assert (r.status, r.expected_mbq, r.deviation_pct) == ("ok", 495.2, 0.0)
