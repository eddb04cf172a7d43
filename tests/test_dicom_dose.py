"""Dose facts and checks end to end: simulator process -> receiver -> journal -> MQTT summaries and alarms."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from bells_helpers import command
from dicom_helpers import SCANNER_AE, dcmtk, dicom_section, target, wait_event, wait_summary

from suitemon.daemon.dicom.service import study_ref
from suitemon.daemon.pseudonym import accession_ref, load_or_create_key
from suitemon.simulators import dicom_study as st
from suitemon.simulators.scanner import send

F18 = 6586.2


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def site_key(suite) -> bytes:
    return load_or_create_key(suite.tmp / "state" / "dicom-pseudonym.key")


def record_dose(watcher, suite, actor="nurse1", **body) -> dict:
    watcher.publish(suite.topic("cmd", actor, "dose-record"), {"request_id": body.get("accession"), **body})
    reply_t = suite.topic("reply", actor)

    def reply(w):
        for top, p, *_ in w.messages:
            if top == reply_t:
                import json

                r = json.loads(p)
                if r["request_id"] == body.get("accession") and r["verb"] == "dose-record":
                    return r
        return None

    return watcher.wait_for(reply, 10, what="dose-record reply")


def test_extraction_equals_what_the_simulator_wrote(make_suite, watcher):
    suite = make_suite(extra=dicom_section())
    suite.start_sims()
    suite.start_daemon(watcher)
    exposures = [["constant_angle", 0.09, 4.8], ["spiral", 3.05, 287.4], ["spiral", 1.2, 60.0]]
    sent = suite.sim(
        "scanner",
        "send_study",
        ct=3,
        pet=4,
        ct_size=64,
        pet_size=32,
        activity=412.5,
        weight=88.0,
        exposures=exposures,
        snomed="SRT",
        meanings="mangled",
        accession="EXTRACT1",
        injected_min_ago=75,
    )
    assert sent["ok"] == sent["sent"] == 9
    s = wait_summary(watcher, suite.site, sent["study_uid"])
    assert [[e["acquisition_type"], e["ctdivol_mgy"], e["dlp_mgycm"]] for e in s["ct"]["events"]] == exposures
    assert all(e["phantom"] == "body" for e in s["ct"]["events"])
    assert s["ct"]["dlp_total_mgycm"] == pytest.approx(sent["dlp_total_mgycm"])
    assert s["ct"]["dlp_total_source"] == "report"
    assert s["pet"]["activity_mbq"] == pytest.approx(412.5) and s["pet"]["activity_unit_in_header"] == "Bq"
    assert s["pet"]["start_at"] == sent["injected_at"] and s["pet"]["half_life_s"] == F18
    assert s["pet"]["weight_kg"] == 88.0 and s["pet"]["radionuclide"] == "F-18"
    assert s["rp_report"] == {
        "administrations": 1,
        "activity_mbq": 412.5,
        "start_at": sent["injected_at"],
        "half_life_s": F18,
        "radionuclide": "F-18",
        "radiopharmaceutical": "FDG",
        "weight_kg": 88.0,
    }
    assert s["instances"]["total"] == 9 and s["accession"] == accession_ref("EXTRACT1", site_key(suite))
    # Enhanced PET: the header's RadionuclideTotalDose is in MBq; the same truth comes out.
    sent = suite.sim(
        "scanner",
        "send_study",
        ct=1,
        pet=5,
        ct_size=64,
        pet_size=32,
        pet_class="enhanced",
        activity=199.9,
        ct_report=False,
        rp_report=False,
        accession="EXTRACT2",
    )
    s = wait_summary(watcher, suite.site, sent["study_uid"])
    assert s["pet"]["activity_mbq"] == pytest.approx(199.9) and s["pet"]["activity_unit_in_header"] == "MBq"
    assert s["instances"]["pet_images"] == 1 and s["checks"]["ct_reference"] == "not_checked"


def test_reconciliation_alarm_on_a_10_percent_header_mismatch_and_none_on_2_percent(make_suite, watcher):
    suite = make_suite(extra=dicom_section())
    suite.start_daemon(watcher)
    injected = (datetime.now(UTC) - timedelta(minutes=70)).replace(microsecond=0)
    calibrated = injected - timedelta(minutes=30)  # measured in the calibrator 30 min before injection
    measured = 480.0
    at_injection = measured * 2 ** (-30 * 60 / F18)
    specs = {}
    for acc, factor in (("REC10", 1.10), ("REC02", 1.02)):
        r = record_dose(
            watcher,
            suite,
            accession=acc,
            room="uptake3",
            prescribed_mbq=400.0,
            measured_mbq=measured,
            administered_at=iso(injected),
            calibration_at=iso(calibrated),
        )
        assert r["ok"], r
        specs[acc] = st.StudySpec(
            accession=acc,
            ct_slices=1,
            pet_slices=2,
            ct_rows=32,
            ct_cols=32,
            pet_rows=16,
            pet_cols=16,
            injected_at=injected,
            activity_mbq=at_injection,
            header_activity_mbq=round(at_injection * factor, 2),
        )
        assert send(st.build_study(specs[acc]), **target(suite)).ok == 5
    bad = wait_summary(watcher, suite.site, specs["REC10"].study_uid)
    good = wait_summary(watcher, suite.site, specs["REC02"].study_uid)
    assert bad["checks"]["activity"]["status"] == "mismatch"
    assert bad["checks"]["activity"]["deviation_pct"] == pytest.approx(10.0, abs=0.05)
    assert bad["checks"]["activity"]["expected_mbq"] == pytest.approx(at_injection, abs=0.01)
    assert good["checks"]["activity"]["status"] == "ok"
    assert good["checks"]["activity"]["deviation_pct"] == pytest.approx(2.0, abs=0.05)
    assert bad["room"] == good["room"] == "uptake3" and bad["dispensed"]["measured_mbq"] == measured

    alarm_id = f"dicom.activity.{study_ref(specs['REC10'].study_uid)}"
    rec = watcher.wait_for(lambda w: w.json_of(suite.topic("alarm", alarm_id)), 10, what="mismatch alarm")
    assert (rec["priority"], rec["kind"], rec["type"], rec["state"]) == (
        "medium",
        "clinical",
        "dicom.activity_mismatch",
        "active",
    )
    assert rec["latching"] and rec["condition"] == "absent"  # a past fact, held until a person resets it
    assert "+10.0 %" in rec["message"] and accession_ref("REC10", site_key(suite)) in rec["message"]
    assert "REC10" not in rec["message"]  # the RIS number itself is not in alarm texts (issue 15 item 7)
    quiet = f"dicom.activity.{study_ref(specs['REC02'].study_uid)}"
    wait_event(
        watcher,
        suite.site,
        "dicom.study_complete",
        lambda e: e["data"]["study_uid"] == specs["REC02"].study_uid,
    )  # recorded after any alarm
    assert not [e for e in watcher.events(suite.site) if e["alarm_id"] == quiet]
    assert watcher.json_of(suite.topic("alarm", quiet)) is None


def test_a_late_dispensing_record_revises_the_summary(make_suite, watcher):
    suite = make_suite(extra=dicom_section())
    suite.start_daemon(watcher)
    injected = (datetime.now(UTC) - timedelta(minutes=65)).replace(microsecond=0)
    spec = st.StudySpec(
        accession="LATE1",
        ct_slices=1,
        pet_slices=1,
        ct_rows=32,
        ct_cols=32,
        pet_rows=16,
        pet_cols=16,
        injected_at=injected,
        activity_mbq=300.0,
    )
    assert send(st.build_study(spec), **target(suite)).ok == 4
    first = wait_summary(watcher, suite.site, spec.study_uid)
    assert first["checks"]["activity"]["status"] == "no_dispense_record" and first["dispensed"] is None
    assert record_dose(
        watcher,
        suite,
        accession="LATE1",
        room="uptake1",
        prescribed_mbq=300.0,
        measured_mbq=301.0,
        administered_at=iso(injected),
    )["ok"]
    second = wait_summary(watcher, suite.site, spec.study_uid, revision=2)
    assert second["checks"]["activity"]["status"] == "ok" and second["room"] == "uptake1"
    completes = [e for e in watcher.events(suite.site) if e["type"] == "dicom.study_complete"]
    assert len(completes) == 1  # the room was freed once


def test_start_time_mismatch_is_a_warning_with_both_times(make_suite, watcher):
    suite = make_suite(extra=dicom_section(start_time_tolerance_min=5))
    suite.start_daemon(watcher)
    spec = st.StudySpec(
        accession="TIME1",
        ct_slices=1,
        pet_slices=1,
        ct_rows=32,
        ct_cols=32,
        pet_rows=16,
        pet_cols=16,
        header_start_shift_min=12,
    )
    assert send(st.build_study(spec), **target(suite)).ok == 4
    ev = wait_event(watcher, suite.site, "dicom.start_time_mismatch")
    assert ev["data"]["difference_min"] == pytest.approx(12.0) and ev["data"]["status"] == "mismatch"
    assert ev["data"]["header_at"] != ev["data"]["report_at"]
    s = wait_summary(watcher, suite.site, spec.study_uid)
    assert s["checks"]["start_time"]["status"] == "mismatch"
    assert not [
        e for e in watcher.events(suite.site) if e["type"] == "alarm.raised"
    ]  # a warning, not an alarm


def test_ct_dose_above_the_local_reference_level_is_a_medium_alarm(make_suite, watcher):
    levels = {"local": [{"protocol": "PET-CT Half Body*", "ctdivol_mgy": 3.0, "dlp_mgycm": 500.0}]}
    suite = make_suite(extra=dicom_section(reference_levels=levels))
    suite.start_daemon(watcher)
    spec = st.StudySpec(
        accession="CTDI1",
        ct_slices=1,
        pet_slices=0,
        ct_rows=32,
        ct_cols=32,
        rp_report=False,
        exposures=(st.CtExposure("constant_angle", 0.1, 5.0), st.CtExposure("spiral", 3.4, 352.5)),
    )
    other = st.StudySpec(
        accession="CTDI2",
        ct_slices=1,
        pet_slices=0,
        ct_rows=32,
        ct_cols=32,
        rp_report=False,
        protocol="Whole Body",
        exposures=(st.CtExposure("spiral", 3.4, 420.0),),
    )
    for spec_ in (spec, other):
        assert send(st.build_study(spec_), **target(suite)).ok == 2
    s = wait_summary(watcher, suite.site, spec.study_uid)
    assert s["ct"]["status"] == "exceeded" and s["ct"]["reference"]["source"] == "local"
    assert [x["quantity"] for x in s["ct"]["exceeded"]] == ["ctdivol_mgy"]
    rec = watcher.wait_for(
        lambda w: w.json_of(suite.topic("alarm", f"dicom.ct_dose.{study_ref(spec.study_uid)}")),
        10,
        what="CT alarm",
    )
    assert (rec["priority"], rec["type"], rec["location"]) == (
        "medium",
        "dicom.ct_reference_exceeded",
        "uptake1",
    )
    o = wait_summary(watcher, suite.site, other.study_uid)  # no local rule: national 4.3 mGy / 400 mGy.cm
    assert o["ct"]["reference"]["source"] == "national"
    assert [x["quantity"] for x in o["ct"]["exceeded"]] == ["dlp_mgycm"]


@pytest.mark.parametrize(
    "body,error",
    [
        (
            {
                "room": "uptake1",
                "prescribed_mbq": 300,
                "measured_mbq": 300,
                "administered_at": "2026-01-01T10:00:00Z",
            },
            "give patient_ref or accession",
        ),
        (
            {
                "accession": "A",
                "room": "uptake1",
                "prescribed_mbq": 300,
                "measured_mbq": 300,
                "residual_mbq": 300,
                "administered_at": "2026-01-01T10:00:00Z",
            },
            "residual_mbq must be less than measured_mbq",
        ),
        (
            {
                "accession": "A",
                "room": "nowhere",
                "prescribed_mbq": 300,
                "measured_mbq": 300,
                "administered_at": "2026-01-01T10:00:00Z",
            },
            "unknown area 'nowhere'",
        ),
        (
            {
                "accession": "A",
                "room": "uptake1",
                "prescribed_mbq": 300,
                "measured_mbq": 300,
                "administered_at": "2026-01-01T10:00:00",
            },
            "administered_at",
        ),
    ],
)
def test_dose_record_refuses_incomplete_or_inconsistent_records(make_suite, watcher, body, error):
    suite = make_suite(extra=dicom_section())
    suite.start_daemon(watcher)
    r = record_dose(watcher, suite, **body)
    assert not r["ok"] and error in r["error"], r
    ev = wait_event(watcher, suite.site, "command.rejected")
    assert ev["data"]["verb"] == "dose-record"
    assert not [e for e in watcher.events(suite.site) if e["type"] == "dose.administered"]


def test_cumulative_reports_nan_floats_and_a_megabecquerel_header_sent_by_dcmtk(
    make_suite, watcher, tmp_path
):
    """Issue 14 items 5, 8, 9 end to end: DCMTK's storescu -> receiver -> journal -> MQTT."""
    suite = make_suite(
        extra=dicom_section(reference_levels={"national": {"ctdivol_mgy": 4.3, "dlp_mgycm": 500.0}})
    )
    suite.start_daemon(watcher)
    exposures = (
        st.CtExposure("constant_angle", 0.12, 6.1),
        st.CtExposure("spiral", 3.4, 352.5),
        st.CtExposure("spiral", math.nan, 120.0),
    )  # the last CTDIvol: a NaN binary float
    spec = st.StudySpec(
        accession="CUMUL1",
        ct_slices=1,
        pet_slices=1,
        ct_rows=32,
        ct_cols=32,
        pet_rows=16,
        pet_cols=16,
        exposures=exposures,
        dlp_total_mgycm=None,
        ct_report_mode="cumulative",
        header_activity_in_mbq=True,
        snomed="SRT",
        rp_report=True,
    )
    files = tmp_path / "study"
    paths = st.write_study(spec, files)
    assert len(paths) == 6  # CT, PET, 3 cumulative CT reports, the RP report
    dump = dcmtk("/usr/bin/dsrdump", str(paths[-2]))  # DCMTK reads the synthesised SR, NaN float and all
    assert dump.returncode == 0 and "Irradiation Event UID" in dump.stdout, dump.stderr
    dump = dcmtk("/usr/bin/dsrdump", str(paths[-1]))  # and the RP report, BMI before weight
    assert dump.returncode == 0 and "Body Mass Index" in dump.stdout, dump.stderr
    r = dcmtk(
        "/usr/bin/storescu",
        "-R",
        "-aet",
        SCANNER_AE,
        "-aec",
        "SUITEMON",
        "+sd",
        "127.0.0.1",
        str(target(suite)["port"]),
        str(files),
    )
    assert r.returncode == 0, r.stderr
    s = wait_summary(watcher, suite.site, spec.study_uid)
    raw = [p for t, p, *_ in watcher.messages if t == suite.topic("dose", "study")][-1]
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"bare {c} on MQTT"))
    # Each irradiation event once: 478.6, not 6.1 + 358.6 + 478.6 = 843.3 (over the 500 level).
    assert s["ct"]["dlp_total_mgycm"] == pytest.approx(478.6) and s["ct"]["reports_superseded"] == 2
    assert [e["ctdivol_mgy"] for e in s["ct"]["events"]] == [0.12, 3.4, None]
    assert s["ct"]["status"] == "incomplete" and s["checks"]["ct_reference"] == "incomplete"
    assert any("not a finite number" in why for why in s["unreadable_values"])
    assert s["rp_report"]["weight_kg"] == pytest.approx(spec.weight_kg)  # SRT BMI before the weight
    assert "MBq written into a Bq field" in s["pet"]["activity_flag"]
    ref = study_ref(spec.study_uid)
    rec = watcher.wait_for(
        lambda w: w.json_of(suite.topic("alarm", f"dicom.header_activity.{ref}")),
        10,
        what="header activity alarm",
    )
    assert (rec["priority"], rec["type"]) == ("medium", "dicom.header_activity_implausible")
    assert watcher.json_of(suite.topic("alarm", f"dicom.ct_dose.{ref}")) is None


def test_a_revised_summary_repeating_an_acknowledged_finding_does_not_reannunciate_it(make_suite, watcher):
    suite = make_suite(extra=dicom_section())
    suite.start_daemon(watcher)
    injected = (datetime.now(UTC) - timedelta(minutes=65)).replace(microsecond=0)
    spec = st.StudySpec(
        accession="REV1",
        ct_slices=1,
        pet_slices=1,
        ct_rows=32,
        ct_cols=32,
        pet_rows=16,
        pet_cols=16,
        injected_at=injected,
        activity_mbq=300.0,
        rp_report=False,
        exposures=(st.CtExposure("spiral", 9.9, 352.5),),
    )  # over the national 4.3 mGy
    assert send(st.build_study(spec), **target(suite)).ok == 3
    wait_summary(watcher, suite.site, spec.study_uid)
    aid = f"dicom.ct_dose.{study_ref(spec.study_uid)}"
    watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", aid))) and a["state"] == "active", 10, what="CT alarm"
    )
    watcher.publish(suite.topic("cmd", "rad1", "ack"), {"alarm_id": aid, "request_id": "ack-rev1"})
    watcher.wait_for(
        lambda w: w.json_of(suite.topic("alarm", aid))["state"] == "acknowledged", 10, what="ack"
    )
    assert record_dose(
        watcher,
        suite,
        accession="REV1",
        room="uptake1",
        prescribed_mbq=300.0,
        measured_mbq=301.0,
        administered_at=iso(injected),
    )["ok"]
    wait_summary(watcher, suite.site, spec.study_uid, revision=2)
    # A second ack, journaled after whatever revision 2 raised: refused only if the first still stands.
    again = command(watcher, suite, "rad1", "ack", alarm_id=aid)
    assert not again["ok"] and "already acknowledged" in again["error"], again
    assert not [e for e in watcher.events(suite.site) if e["type"] == "alarm.reannunciated"]
