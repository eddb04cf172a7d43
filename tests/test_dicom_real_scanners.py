"""What real scanners send (issue 14, items 5-9): cumulative CT dose reports, BMI next to weight,
unit spellings, non-finite floats, dual-tracer headers, implausible header activities and
start times without a date. The simulator writes each the way a scanner does; suitemon must
read it right, or say which value it could not read, and never pass it as "ok".
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from suitemon.daemon.contract import dumps
from suitemon.daemon.dicom.checks import Dispensed, check_ct
from suitemon.daemon.dicom.config import DicomConfig
from suitemon.daemon.dicom.dose_sr import CtDoseReport, CtEvent
from suitemon.daemon.dicom.parse import Parsed, parse_bytes
from suitemon.daemon.dicom.studies import Study, evaluate, summary
from suitemon.simulators import dicom_study as st

TZ = ZoneInfo("Europe/London")
KEY = b"k" * 32
INJECTED = datetime(2026, 6, 1, 8, 30, tzinfo=UTC)
EXPOSURES = (
    st.CtExposure("constant_angle", 0.12, 6.1),
    st.CtExposure("spiral", 3.4, 352.5),
    st.CtExposure("spiral", 2.9, 120.0),
)  # 478.6 mGy.cm in all


def parse(ds) -> Parsed:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    r = parse_bytes(buf.getvalue(), key=KEY, site_tz=TZ)
    assert isinstance(r, Parsed), r
    return r


def study_of(datasets) -> Study:
    study = None
    for i, ds in enumerate(datasets):
        r = parse(ds)
        study = study or Study(r.ident.study_uid)
        study.add(r, Path(f"/nonexistent/{i}"), None, 0.0, 0.0)
    return study


def cfg(dlp_level=500.0, ctdi_level=4.3) -> DicomConfig:
    return DicomConfig(
        allow=[{"ae_title": "PETCT1"}],
        reference_levels={"national": {"ctdivol_mgy": ctdi_level, "dlp_mgycm": dlp_level}},
    )


def strict_json(obj) -> dict:
    def no_constant(name):
        raise AssertionError(f"bare {name} in JSON")

    return json.loads(dumps(obj), parse_constant=no_constant)


# -- item 5: cumulative CT dose reports ------------------------------------------------------------
@pytest.mark.parametrize("order", ["as_sent", "reversed"])
def test_cumulative_ct_reports_count_each_irradiation_event_once(order):
    spec = st.StudySpec(
        exposures=EXPOSURES, ct_report_mode="cumulative", ct_slices=0, pet_slices=0, rp_report=False
    )
    reports = list(st.build_study(spec))
    assert len(reports) == 3  # one after each exposure, each repeating the earlier ones
    if order == "reversed":
        reports.reverse()
    study = study_of(reports)
    f = evaluate(study, None, cfg(dlp_level=500.0))
    # Adding the three reports' totals would give 6.1 + 358.6 + 478.6 = 843.3 and a false "exceeded".
    assert f.ct.dlp_total_mgycm == pytest.approx(478.6) and f.ct.dlp_total_source == "report"
    assert f.ct.status == "ok" and f.ct.exceeded == []
    s = strict_json(summary(study, None, f, 0.0))
    assert [e["dlp_mgycm"] for e in s["ct"]["events"]] == [6.1, 352.5, 120.0]
    assert (s["ct"]["reports_received"], s["ct"]["reports_superseded"]) == (3, 2)


def test_reports_that_share_no_event_are_still_added():
    a = st.StudySpec(exposures=EXPOSURES[:2], ct_slices=0, pet_slices=0, rp_report=False)
    second = st.ct_dose_report(st.StudySpec(exposures=EXPOSURES[2:]))  # other event UIDs: a second session
    second.StudyInstanceUID = a.study_uid
    study = study_of([st.ct_dose_report(a), second])
    f = evaluate(study, None, cfg(dlp_level=470.0))
    assert f.ct.dlp_total_mgycm == pytest.approx(478.6)
    assert f.ct.status == "exceeded"


def test_a_lost_middle_report_leaves_no_event_uncounted():
    uid = lambda i: f"1.2.3.{i}"  # noqa: E731
    ev = lambda i, dlp: CtEvent("spiral", 3.0, dlp, "body", "P", uid(i))  # noqa: E731
    first = CtDoseReport("9.1", (ev(1, 100.0), ev(2, 50.0)), 150.0, 2)
    other = CtDoseReport("9.2", (ev(2, 50.0), ev(3, 70.0)), 120.0, 2)  # overlaps, neither holds all
    study = Study("1.2")
    from suitemon.daemon.dicom.parse import Identity

    for r in (first, other):
        study.add(
            Parsed(Identity("x", r.sop_instance, "1.2"), "ct_dose", ct_dose=r), Path("/x"), None, 0.0, 0.0
        )
    f = evaluate(study, None, cfg())
    assert f.ct.dlp_total_mgycm == pytest.approx(220.0) and f.ct.dlp_total_source == "sum_of_events"


# -- item 6: codes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("snomed", ["SRT", "SCT"])
@pytest.mark.parametrize(
    "items", [("height", "bmi", "weight"), ("weight", "bmi", "height"), ("bmi", "weight")]
)
def test_body_mass_index_is_not_taken_for_the_weight(snomed, items):
    spec = st.StudySpec(snomed=snomed, patient_items=items, weight_kg=93.0, height_m=1.8, meanings="mangled")
    r = parse(st.rp_dose_report(spec)).rp_dose
    assert r.weight_kg == pytest.approx(93.0) and r.unreadable == ()
    assert r.administrations[0].activity_mbq == pytest.approx(spec.activity_mbq)


@pytest.mark.parametrize("snomed", ["SRT", "SCT"])
def test_cone_beam_and_spiral_are_read_in_both_snomed_spellings(snomed):
    ds = st.ct_dose_report(st.StudySpec(snomed=snomed, exposures=(st.CtExposure("spiral", 3.0, 300.0),)))
    acq = ds.ContentSequence[-1].ContentSequence[1].ConceptCodeSequence[0]
    assert parse(ds).ct_dose.events[0].acquisition_type == "spiral"
    acq.CodeValue, acq.CodingSchemeDesignator = (
        ("702569007", "SCT") if snomed == "SCT" else ("R-FB8F1", "SRT")
    )
    assert parse(ds).ct_dose.events[0].acquisition_type == "cone_beam"
    acq.CodeValue, acq.CodingSchemeDesignator = "113808", "DCM"  # ICRP Pub 60, not an acquisition type
    assert parse(ds).ct_dose.events[0].acquisition_type == "113808 (DCM)"


# -- item 7: units ------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["mGy.cm", "mGycm", "mGy*cm", "mGy cm"])
def test_dlp_unit_spellings_of_real_scanners_are_read_as_mgy_cm(spelling):
    spec = st.StudySpec(exposures=EXPOSURES, dlp_unit=spelling)
    r = parse(st.ct_dose_report(spec)).ct_dose
    assert [e.dlp_mgycm for e in r.events] == [6.1, 352.5, 120.0]
    assert r.dlp_total_mgycm == pytest.approx(478.6) and r.unreadable == ()


@pytest.mark.parametrize("spelling", ["MGy.cm", "mGy.m", "cGy.cm", "mSv"])
def test_a_unit_of_another_meaning_is_one_unreadable_value_and_the_rest_is_kept(spelling):
    spec = st.StudySpec(exposures=EXPOSURES, dlp_unit=spelling)
    r = parse(st.ct_dose_report(spec)).ct_dose
    assert [e.dlp_mgycm for e in r.events] == [None, None, None]
    assert [e.ctdivol_mgy for e in r.events] == [0.12, 3.4, 2.9]  # kept
    assert len(r.unreadable) == 4 and all(repr(spelling) in why for why in r.unreadable)
    study = study_of([st.ct_dose_report(spec)])
    f = evaluate(study, None, cfg())
    assert f.ct.status == "incomplete" and "unreadable" in f.ct.reason  # never "ok" with a value missing
    assert len(strict_json(summary(study, None, f, 0.0))["unreadable_values"]) == 4


def test_a_report_with_one_bad_weight_keeps_its_administration():
    ds = st.rp_dose_report(st.StudySpec(activity_mbq=301.0, patient_items=("weight",)))
    ds.ContentSequence[-1].ContentSequence[0].MeasuredValueSequence[0].MeasurementUnitsCodeSequence[
        0
    ].CodeValue = "st"
    r = parse(ds).rp_dose
    assert r.weight_kg is None and r.administrations[0].activity_mbq == pytest.approx(301.0)
    assert "Patient weight (29463-7, LN) is in unit 'st'" in r.unreadable[0]


# -- item 8: non-finite values ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_float_in_a_dose_report_is_unreadable_never_below_the_level(bad):
    spec = st.StudySpec(exposures=(st.CtExposure("spiral", bad, 352.5),), float_values=True)
    r = parse(st.ct_dose_report(spec)).ct_dose
    assert r.events[0].ctdivol_mgy is None and r.events[0].dlp_mgycm == 352.5
    assert "FloatingPointValue" in r.unreadable[0] and "not a finite number" in r.unreadable[0]
    study = study_of([st.ct_dose_report(spec)])
    f = evaluate(study, None, cfg())
    assert f.ct.status == "incomplete"
    s = strict_json(summary(study, None, f, 0.0))
    assert s["ct"]["events"][0]["ctdivol_mgy"] is None


def test_a_non_finite_value_that_reaches_a_check_exceeds_it_and_goes_out_as_null():
    r = CtDoseReport("1.2", (CtEvent("spiral", math.nan, 100.0, "body", "P", "1.2.3"),), math.nan, 1)
    ct = check_ct([r], [], cfg().reference_levels)
    assert ct.status == "exceeded"  # "NaN > 4.3" is false; "not NaN <= 4.3" is true
    assert {x["quantity"] for x in ct.exceeded} == {"ctdivol_mgy", "dlp_mgycm"}
    assert strict_json({"value": math.nan, "nested": [math.inf]}) == {"value": None, "nested": [None]}


@pytest.mark.parametrize("raw", ["NaN", "inf", "-Infinity"])
def test_a_non_finite_header_value_is_unreadable_and_the_header_is_kept(raw):
    ds = st.pet_slice(st.StudySpec(weight_kg=70.0, activity_mbq=300.0), "1.2.3", 0)
    ds["PatientWeight"].value = raw  # what a console writes from a NaN float
    r = parse(ds)
    assert r.kind == "pet_image" and r.pet.weight_kg is None
    assert r.pet.activity_mbq == pytest.approx(300.0) and "PatientWeight" in r.pet.unreadable[0]


# -- item 9: PET header edge cases ---------------------------------------------------------------------
def test_every_radiopharmaceutical_of_a_dual_tracer_header_is_read_and_the_dispensed_one_reconciled():
    ga = st.TracerSpec("Ga-68", "Ga-68 PSMA-11", 151.0, INJECTED + timedelta(minutes=20))
    spec = st.StudySpec(
        activity_mbq=250.0,
        injected_at=INJECTED,
        extra_tracers=(ga,),
        ct_slices=0,
        pet_slices=1,
        ct_report=False,
    )
    study = study_of(st.build_study(spec))
    header, _ = study.pet()
    assert [(t.radionuclide, t.activity_mbq) for t in header.tracers] == [("F-18", 250.0), ("Ga-68", 151.0)]
    given = Dispensed(
        "r1",
        "e1",
        None,
        spec.accession,
        "uptake1",
        "Ga-68",
        151.0,
        None,
        INJECTED + timedelta(minutes=20),
        None,
        half_life_s=ga.half_life_s,
    )
    f = evaluate(study, given, cfg())
    assert f.header.radionuclide == "Ga-68" and f.activity.status == "ok"
    assert f.start_time.status == "ok"  # compared with the Ga-68 administration of the dose report
    s = strict_json(summary(study, given, f, 0.0))
    assert [t["radionuclide"] for t in s["pet"]["radiopharmaceuticals"]] == ["Ga-68", "F-18"]
    assert s["rp_report"]["administrations"] == 2


@pytest.mark.parametrize(
    "pet_class,in_mbq,flagged",
    [
        ("classic", True, True),  # 350 written into a Bq field: 0.00035 MBq
        ("classic", False, False),
        ("enhanced", False, False),
    ],
)
def test_an_activity_that_can_only_be_in_the_wrong_unit_is_flagged(pet_class, in_mbq, flagged):
    spec = st.StudySpec(
        pet_class=pet_class,
        header_activity_in_mbq=in_mbq,
        activity_mbq=350.0,
        ct_slices=0,
        pet_slices=1,
        ct_report=False,
        rp_report=False,
    )
    study = study_of(st.build_study(spec))
    f = evaluate(study, None, cfg())
    s = strict_json(summary(study, None, f, 0.0))
    assert (s["pet"]["activity_flag"] is not None) == flagged
    if flagged:
        assert "MBq written into a Bq field" in s["pet"]["activity_flag"]


def test_a_bq_value_in_an_mbq_field_is_flagged_too():
    ds = st.pet_slice(st.StudySpec(pet_class="enhanced"), "1.2.3", 0, frames=2)
    ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = "350000000"
    h = parse(ds).pet
    assert h.activity_flag and "Bq written into an MBq field" in h.activity_flag


def test_a_start_time_without_date_is_dated_from_the_injection_not_the_series():
    # Zr-89 antibody: injected on day 0, scanned four days later by a console writing StartTime only.
    spec = st.StudySpec(
        nuclide="Zr-89",
        half_life_s=78.4 * 3600,
        injected_at=INJECTED,
        header_start="time_only",
        scan_delay_min=4 * 24 * 60,
        ct_slices=0,
        pet_slices=1,
        ct_report=False,
    )
    study = study_of(st.build_study(spec))
    header, _ = study.pet()
    assert header.start_source == "series_date"  # provisional
    f = evaluate(study, None, cfg())
    assert f.header.start_at == INJECTED and f.header.start_source == "injection_date"
    assert f.start_time.status == "ok"
    # No dose report: the dispensing record dates it.
    no_report = study_of(st.build_study(spec.with_(rp_report=False)))
    given = Dispensed("r1", "e1", None, spec.accession, "uptake1", "Zr-89", 74.0, None, INJECTED, None)
    assert evaluate(no_report, given, cfg()).header.start_at == INJECTED


def test_a_start_time_near_midnight_takes_the_date_nearest_the_injection():
    late = datetime(2026, 6, 1, 22, 58, tzinfo=UTC)  # 23:58 BST
    spec = st.StudySpec(
        injected_at=late,
        header_start="time_only",
        report_start_shift_min=3,
        ct_slices=0,
        pet_slices=1,
        ct_report=False,
    )  # the report says 00:01 the next day
    f = evaluate(study_of(st.build_study(spec)), None, cfg())
    assert f.header.start_at == late and f.start_time.difference_min == pytest.approx(-3.0)
