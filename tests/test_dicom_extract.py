"""Dose extraction, as tables: what the synthetic scanner wrote is what suitemon reads.

Concepts are matched on code value + scheme (SRT and SCT variants), never on meaning text;
units are converted; malformed values and truncated files are refused with a reason.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from suitemon.daemon.dicom import values as dv
from suitemon.daemon.dicom.dose_pet import pet_header
from suitemon.daemon.dicom.dose_sr import ct_dose_report
from suitemon.daemon.dicom.parse import Parsed, Unparseable, parse_bytes
from suitemon.daemon.dicom.structure import layout
from suitemon.simulators import dicom_study as st

TZ = ZoneInfo("Europe/London")
KEY = b"k" * 32
INJECTED = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 00:30 UTC, the night the clocks go forward


def encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def parse(ds: Dataset):
    return parse_bytes(encode(ds), key=KEY, site_tz=TZ)


@pytest.mark.parametrize("snomed", ["SCT", "SRT"])
@pytest.mark.parametrize("meanings", ["standard", "mangled"])
@pytest.mark.parametrize("sop_class", [st.XRAY_DOSE_SR, st.ENHANCED_SR, st.COMPREHENSIVE_SR])
def test_ct_dose_report_events_and_total_match_what_was_written(snomed, meanings, sop_class):
    spec = st.StudySpec(
        snomed=snomed,
        meanings=meanings,
        exposures=(
            st.CtExposure("constant_angle", 0.11, 5.9, "body"),
            st.CtExposure("spiral", 3.85, 401.2, "body", protocol="WB FDG"),
            st.CtExposure("sequenced", 12.5, 40.0, "head"),
        ),
    )
    r = parse(st.ct_dose_report(spec, sop_class))
    assert isinstance(r, Parsed) and r.kind == "ct_dose"
    got = [(e.acquisition_type, e.ctdivol_mgy, e.dlp_mgycm, e.phantom, e.protocol) for e in r.ct_dose.events]
    assert got == [
        ("constant_angle", 0.11, 5.9, "body", spec.protocol),
        ("spiral", 3.85, 401.2, "body", "WB FDG"),
        ("sequenced", 12.5, 40.0, "head", spec.protocol),
    ]
    assert r.ct_dose.dlp_total_mgycm == pytest.approx(447.1)
    assert r.ct_dose.event_count == 3
    assert all(e.event_uid for e in r.ct_dose.events)


@pytest.mark.parametrize("snomed", ["SCT", "SRT"])
def test_radiopharmaceutical_report_matches_what_was_written(snomed):
    spec = st.StudySpec(
        snomed=snomed,
        meanings="mangled",
        activity_mbq=312.4,
        weight_kg=81.5,
        injected_at=INJECTED,
        report_start_shift_min=-3,
    )
    r = parse(st.rp_dose_report(spec))
    assert isinstance(r, Parsed) and r.kind == "rp_dose"
    (a,) = r.rp_dose.administrations
    assert a.activity_mbq == pytest.approx(312.4)
    assert a.start_at == INJECTED - timedelta(minutes=3)  # written in local time (BST starts at 01:00 UTC)
    assert a.half_life_s == pytest.approx(6586.2)
    assert (a.radionuclide, a.radiopharmaceutical) == ("F-18", "FDG")
    assert r.rp_dose.weight_kg == pytest.approx(81.5)


@pytest.mark.parametrize(
    "pet_class,sop_class,unit",
    [
        ("classic", st.PET_IMAGE, "Bq"),  # RadionuclideTotalDose in Bq
        ("enhanced", st.ENHANCED_PET, "MBq"),  # ... and in MBq
    ],
)
@pytest.mark.parametrize("write_tz_offset", [False, True])
def test_pet_header_activity_unit_follows_the_sop_class(pet_class, sop_class, unit, write_tz_offset):
    spec = st.StudySpec(
        pet_class=pet_class,
        activity_mbq=355.0,
        header_activity_mbq=348.2,
        weight_kg=64.0,
        injected_at=INJECTED + timedelta(days=100),
        write_tz_offset=write_tz_offset,
    )
    ds = st.pet_slice(spec, "1.2.3", 0, frames=3 if pet_class == "enhanced" else 1)
    assert ds.SOPClassUID == sop_class
    r = parse(ds)
    assert isinstance(r, Parsed) and r.kind == "pet_image"
    assert r.pet.activity_unit == unit
    assert r.pet.activity_mbq == pytest.approx(348.2)
    assert r.pet.start_at == INJECTED + timedelta(days=100)
    assert (r.pet.half_life_s, r.pet.weight_kg, r.pet.radionuclide) == (6586.2, 64.0, "F-18")


def test_a_classic_header_with_megabecquerels_typed_in_reads_as_a_millionth():
    ds = st.pet_slice(st.StudySpec(), "1.2.3", 0)
    ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = "350"  # MBq typed into a Bq field
    h = pet_header(dcmread(io.BytesIO(encode(ds))), st.PET_IMAGE, TZ)
    assert h.activity_mbq == pytest.approx(350e-6)


def test_header_without_start_datetime_uses_start_time_and_series_date():
    ds = st.pet_slice(st.StudySpec(injected_at=INJECTED + timedelta(days=10)), "1.2.3", 0)
    rp = ds.RadiopharmaceuticalInformationSequence[0]
    del rp.RadiopharmaceuticalStartDateTime
    ds.SeriesDate = (INJECTED + timedelta(days=10)).astimezone(TZ).strftime("%Y%m%d")
    h = pet_header(dcmread(io.BytesIO(encode(ds))), st.PET_IMAGE, TZ)
    assert h.start_at == INJECTED + timedelta(days=10)


def _num_item(ds: Dataset, code: str) -> Dataset:
    for item in ds.ContentSequence:
        for sub in getattr(item, "ContentSequence", []):
            for leaf in [sub, *getattr(sub, "ContentSequence", [])]:
                if leaf.ConceptNameCodeSequence[0].CodeValue == code:
                    return leaf
    raise LookupError(code)


def test_units_are_converted_and_an_unknown_unit_is_one_unreadable_value():
    spec = st.StudySpec(exposures=(st.CtExposure("spiral", 3.0, 300.0),))
    ds = st.ct_dose_report(spec)
    leaf = _num_item(ds, "113830")
    leaf.MeasuredValueSequence[0].NumericValue = "0.003"
    leaf.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue = "Gy"
    r = parse(ds)
    assert r.ct_dose.events[0].ctdivol_mgy == pytest.approx(3.0)
    leaf.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue = "mSv"
    r = parse(ds)
    assert isinstance(r, Parsed)  # kept: only that value is unreadable
    assert r.ct_dose.events[0].ctdivol_mgy is None and r.ct_dose.events[0].dlp_mgycm == 300.0
    assert any("Mean CTDIvol (113830) is in unit 'mSv'" in why for why in r.ct_dose.unreadable)


def test_a_concept_under_an_unknown_scheme_is_not_taken_for_ctdivol():
    ds = st.ct_dose_report(st.StudySpec(exposures=(st.CtExposure("spiral", 3.0, 300.0),)))
    leaf = _num_item(ds, "113830")
    leaf.ConceptNameCodeSequence[0].CodingSchemeDesignator = "99VENDOR"  # same value, other scheme
    r = parse(ds)
    assert r.ct_dose.events[0].ctdivol_mgy is None
    assert r.ct_dose.events[0].dlp_mgycm == 300.0


def test_missing_dlp_total_is_none_not_invented():
    ds = st.ct_dose_report(st.StudySpec())
    ds.ContentSequence = [i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue != "113811"]
    assert ct_dose_report(dcmread(io.BytesIO(encode(ds)))).dlp_total_mgycm is None


# -- strict values ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "vr,raw,expected",
    [
        ("DS", "350", 350.0),
        ("DS", " 3.5e2 ", 350.0),
        ("DS", "-0.25", -0.25),
        ("IS", "12", 12.0),
        ("DS", "3,5", dv.BadValue),
        ("DS", "1.0.0", dv.BadValue),
        ("IS", "1A", dv.BadValue),
        ("IS", "1.5", dv.BadValue),
        ("DS", "12345678901234567", dv.BadValue),
        ("DS", "NaN", dv.BadValue),
    ],
)
def test_numbers_follow_their_vr_grammar(vr, raw, expected):
    tag = 0x00101030 if vr == "DS" else 0x00200013  # PatientWeight (DS) / InstanceNumber (IS)
    value = raw.encode() + (b" " if len(raw) % 2 else b"")
    ds = Dataset()
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)  # as read from a file
    key = "PatientWeight" if vr == "DS" else "InstanceNumber"
    if expected is dv.BadValue:
        with pytest.raises(dv.BadValue):
            dv.number(ds, key)
    else:
        assert dv.number(ds, key) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        ("20260328233000", datetime(2026, 3, 28, 23, 30, tzinfo=UTC)),  # GMT
        ("20260701120000", datetime(2026, 7, 1, 11, 0, tzinfo=UTC)),  # BST
        ("20260701120000.5+0200", datetime(2026, 7, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("202607011200", datetime(2026, 7, 1, 11, 0, tzinfo=UTC)),
        ("20261301120000", dv.BadValue),
        ("2026-07-01", dv.BadValue),
        ("20260701120000+2500", dv.BadValue),
    ],
)
def test_datetimes_use_their_offset_or_the_site_zone(value, expected):
    if expected is dv.BadValue:
        with pytest.raises(dv.BadValue):
            dv.parse_dt(value, default_tz=TZ)
    else:
        assert dv.parse_dt(value, default_tz=TZ) == expected


# -- malformed files -----------------------------------------------------------------------------
def test_pydicoms_malformed_samples_are_refused_with_a_reason():
    trunc = parse_bytes(Path(get_testdata_file("MR_truncated.dcm")).read_bytes(), key=KEY, site_tz=TZ)
    assert isinstance(trunc, Unparseable) and "truncated" in trunc.reason
    no_meta = parse_bytes(Path(get_testdata_file("no_meta.dcm")).read_bytes(), key=KEY, site_tz=TZ)
    assert isinstance(no_meta, Unparseable) and "DICM" in no_meta.reason
    bad = dcmread(get_testdata_file("badVR.dcm"))
    bad.SOPClassUID = bad.file_meta.MediaStorageSOPClassUID = st.CT_IMAGE  # a class we accept; raw '1A' kept
    r = parse(bad)
    assert isinstance(r, Unparseable)
    assert r.reason == "invalid value for VR IS: '1A' in NumberOfFrames (0028,0008)"
    assert r.ident.study_uid == "1.2.999.999.99.9.9999.8888"


@pytest.mark.filterwarnings("ignore:Unknown encoding")  # cuts inside SpecificCharacterSet
@pytest.mark.parametrize(
    "build",
    [
        lambda s: st.ct_slice(s, "1.2", 0),
        lambda s: st.pet_slice(s, "1.2", 0),
        st.ct_dose_report,
        st.rp_dose_report,
    ],
    ids=["ct", "pet", "ct_sr", "rp_sr"],
)
def test_every_cut_of_a_file_is_caught(build):
    data = encode(build(st.StudySpec(ct_rows=16, ct_cols=16, pet_rows=8, pet_cols=8)))
    assert isinstance(parse_bytes(data, key=KEY, site_tz=TZ), Parsed)
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    step = max(1, (len(data) - meta_end) // 97)
    for cut in range(meta_end + 1, len(data), step):
        r = parse_bytes(data[:cut], key=KEY, site_tz=TZ)
        assert isinstance(r, Unparseable), f"a file cut at {cut} of {len(data)} bytes was accepted"


def test_missing_required_attributes_are_named():
    ds = st.ct_slice(st.StudySpec(ct_rows=8, ct_cols=8), "1.2", 0)
    del ds.StudyInstanceUID
    r = parse(ds)
    assert (
        isinstance(r, Unparseable) and r.reason == "missing required attribute StudyInstanceUID (0020,000D)"
    )
    ds = st.ct_slice(st.StudySpec(ct_rows=8, ct_cols=8), "1.2", 0)
    del ds.PixelData
    assert parse(ds).reason == "missing required attribute PixelData (7FE0,0010)"
    sr = st.rp_dose_report(st.StudySpec())
    del sr.ConceptNameCodeSequence
    assert "ConceptNameCodeSequence" in parse(sr).reason


def test_meta_and_dataset_must_agree_on_the_sop_class():
    data = encode(st.ct_slice(st.StudySpec(ct_rows=8, ct_cols=8), "1.2", 0))
    ct, sc = st.CT_IMAGE.encode() + b"\0", st.SECONDARY_CAPTURE.encode() + b"\0"
    r = parse_bytes(data.replace(ct, sc, 1), key=KEY, site_tz=TZ)  # the first one is in the file meta
    assert isinstance(r, Unparseable) and "file meta says SOP class" in r.reason


def test_layout_checks_encapsulated_fragments():
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    ds = st.secondary_capture(st.StudySpec())
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    data = encode(ds)
    assert layout(data).pixel_length is None and layout(data).has_pixels
    with pytest.raises(dv.BadValue):
        layout(data[:-8])  # no sequence delimiter
