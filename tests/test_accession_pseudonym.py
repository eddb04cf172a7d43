"""Issue 15 item 7: accession numbers are identifiers; MQTT and alarm texts carry only their pseudonym.

Probe: a study and its dispensing record with RIS accession number N; before the change N
appeared in the dose summary, the study events, the mismatch alarm's text, the dose record
and the dispenser's device state. After it, no payload on the broker contains N, and the
study and the record still match each other (both sides use the same site key).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from dicom_helpers import dicom_section, target, wait_event, wait_summary
from dose_fixtures import dispenser, extra, patient, wait_records
from test_dicom_dose import F18, iso

from suitemon.daemon.dicom.service import study_ref
from suitemon.daemon.pseudonym import accession_ref, load_or_create_key, patient_ref
from suitemon.simulators import dicom_study as st
from suitemon.simulators.scanner import send

ACC = "RIS77123"


def leaks(watcher, site: str, secret: str) -> list[str]:
    return [
        top for top, p, *_ in watcher.messages if top.startswith(f"suitemon/{site}/") and secret.encode() in p
    ]


def record_dose(watcher, suite, **body) -> dict:
    watcher.publish(suite.topic("cmd", "nurse1", "dose-record"), {"request_id": "rq-acc", **body})
    reply_t = suite.topic("reply", "nurse1")
    return watcher.wait_for(
        lambda w: next(
            (
                r
                for top, p, *_ in w.messages
                if top == reply_t and (r := json.loads(p))["request_id"] == "rq-acc"
            ),
            None,
        ),
        10,
        what="dose-record reply",
    )


def site_key(suite) -> bytes:
    return load_or_create_key(suite.tmp / "state" / "dicom-pseudonym.key")


def test_accession_ref_is_keyed_stable_and_apart_from_patient_refs():
    k1, k2 = b"1" * 32, b"2" * 32
    ref = accession_ref(ACC, k1)
    assert ref == accession_ref(f" {ACC} ", k1) and len(ref) == 16 and ref.startswith("a")
    assert ref != accession_ref(ACC, k2) and ACC not in ref
    assert ref[1:] != patient_ref(ACC, k1)[1:]  # the same string as a PatientID gets an unrelated reference


def test_study_dose_record_and_alarm_text_carry_only_the_pseudonym(make_suite, watcher):
    suite = make_suite(extra=dicom_section())
    suite.start_daemon(watcher)
    injected = (datetime.now(UTC) - timedelta(minutes=70)).replace(microsecond=0)
    measured = 480.0
    at_injection = measured * 2 ** (-30 * 60 / F18)
    r = record_dose(
        watcher,
        suite,
        accession=ACC,
        room="uptake3",
        prescribed_mbq=400.0,
        measured_mbq=measured,
        administered_at=iso(injected),
        calibration_at=iso(injected - timedelta(minutes=30)),
    )
    assert r["ok"], r
    spec = st.StudySpec(
        accession=ACC,
        ct_slices=1,
        pet_slices=2,
        ct_rows=32,
        ct_cols=32,
        pet_rows=16,
        pet_cols=16,
        injected_at=injected,
        activity_mbq=at_injection,
        header_activity_mbq=round(at_injection * 1.10, 2),
    )
    assert send(st.build_study(spec), **target(suite)).ok == 5
    s = wait_summary(watcher, suite.site, spec.study_uid)
    ref = accession_ref(ACC, site_key(suite))
    assert s["accession"] == ref
    # Matched by the pseudonym on both sides: the record was found and the mismatch seen.
    assert s["checks"]["activity"]["status"] == "mismatch" and s["dispensed"]["measured_mbq"] == measured
    alarm = watcher.wait_for(
        lambda w: w.json_of(suite.topic("alarm", f"dicom.activity.{study_ref(spec.study_uid)}")),
        10,
        what="mismatch alarm",
    )
    assert f"accession {ref}" in alarm["message"]
    wait_event(watcher, suite.site, "dicom.study_complete")  # recorded last
    events = [
        e for e in watcher.events(suite.site) if e["type"] in ("dose.administered", "dicom.study_complete")
    ]
    assert {e["data"]["accession"] for e in events} == {ref} and len(events) == 2
    # The command that brought the number in is on its own topic (cmd/..., inbound); nothing suitemon sends has it.
    assert [t for t in leaks(watcher, suite.site, ACC) if "/cmd/" not in t] == []


def test_dispenser_record_and_device_state_carry_only_the_pseudonym(make_suite, watcher, tmp_path):
    suite = make_suite({"disp": dispenser(tmp_path, "tcp")}, extra())
    suite.start_sims()
    suite.start_daemon(watcher)
    p = patient(1)
    suite.sim("disp", "job", **p, auto=False)  # a booking on the unit: its accession is in the device state
    ref = accession_ref(p["accession"], site_key(suite))
    state_t = suite.topic("device", "disp", "state")
    watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and (s["values"].get("job") or {}).get("accession") == ref,
        10,
        what="device state with the booked job",
    )
    watcher.wait_for(
        lambda w: (w.json_of(state_t) or {}).get("values", {}).get("unit_state") == "ready",
        15,
        what="dose drawn up",
    )
    suite.sim("disp", "inject")
    rec = wait_records(watcher, suite.site, 1)[0]
    assert rec["accession"] == ref and rec["patient_ref"] == p["patient_ref"]
    assert leaks(watcher, suite.site, p["accession"]) == []


def test_a_config_without_dicom_still_pseudonymises(make_suite, watcher, tmp_path):
    # The key lives in the state directory when no [dicom] section names it.
    suite = make_suite({"disp": dispenser(tmp_path, "tcp")}, extra())
    suite.start_daemon(watcher)
    assert (suite.tmp / "state" / "dicom-pseudonym.key").stat().st_mode & 0o077 == 0
