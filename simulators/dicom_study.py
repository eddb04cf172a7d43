"""A synthetic PET-CT study, built with pydicom: CT and PET slices and the two dose reports.

The spec says what the scanner "did" (activity, injection time, CT exposures); the
builders write it the way scanners do (Bq in classic PET headers, MBq in Enhanced PET,
SR code trees per TID 10011/10021, SRT or SCT codes, code meanings in any case). Tests
compare what suitemon extracts with the spec, so the spec is the truth.

Behaviours of real scanners the spec can ask for (not what suitemon's parser would like):
a new cumulative CT dose report after each exposure, repeating the earlier events with the
same Irradiation Event UIDs (``ct_report_mode="cumulative"``); patient characteristics with
Body Mass Index (SRT F-01860 / SCT 60621009) and height next to the weight, in any order;
unit spellings such as "mGycm" for UCUM "mGy.cm"; binary floats (FloatingPointValue, FD),
including NaN from a faulty console; several radiopharmaceuticals in one header (dual
tracer); headers from older consoles with RadiopharmaceuticalStartTime only; long-lived
tracers scanned days after the injection (``scan_delay_min``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
ENHANCED_PET = "1.2.840.10008.5.1.4.1.1.130"
XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
RP_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.68"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.7433.2"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class CtExposure:
    acquisition_type: str  # "spiral" | "constant_angle" | "sequenced" | "stationary"
    ctdivol_mgy: float
    dlp_mgycm: float
    phantom: str = "body"
    protocol: str | None = None  # None: the study's protocol


@dataclass(frozen=True)
class TracerSpec:
    """A second (third, ...) radiopharmaceutical of a dual-tracer study."""

    nuclide: str = "Ga-68"  # a key of _NUCLIDES
    agent: str = "Ga-68 PSMA-11"
    activity_mbq: float = 150.0
    injected_at: datetime = field(default_factory=lambda: _now() - timedelta(minutes=70))
    half_life_s: float = 67.83 * 60


@dataclass(frozen=True)
class StudySpec:
    patient_id: str = "SIM0001"
    patient_name: str = "Simulated^Patient"
    accession: str | None = "ACC0001"
    study_uid: str = field(default_factory=generate_uid)
    timezone: str = "Europe/London"
    write_tz_offset: bool = False  # TimezoneOffsetFromUTC in every instance
    ct_slices: int = 20
    ct_rows: int = 512
    ct_cols: int = 512
    pet_slices: int = 20
    pet_rows: int = 192
    pet_cols: int = 192
    pet_class: str = "classic"  # "classic" (Bq, one instance per slice) | "enhanced" (MBq, multi-frame)
    activity_mbq: float = 350.0  # what the patient got at injected_at
    injected_at: datetime = field(default_factory=lambda: _now() - timedelta(hours=1))  # aware
    header_activity_mbq: float | None = None  # what the console typed into the header (default: the truth)
    header_start_shift_min: float = 0.0  # header start time minus the true injection time
    report_start_shift_min: float = 0.0  # dose report start time minus the true injection time
    half_life_s: float = 6586.2
    weight_kg: float = 72.0
    protocol: str = "PET-CT Half Body"
    exposures: tuple[CtExposure, ...] = (
        CtExposure("constant_angle", 0.12, 6.1),
        CtExposure("spiral", 3.4, 352.5),
    )
    dlp_total_mgycm: float | None = None  # default: sum of the exposures
    ct_report: bool = True
    ct_report_class: str = XRAY_DOSE_SR  # GE sends Enhanced SR, some send Comprehensive SR
    rp_report: bool = True
    snomed: str = "SCT"  # "SCT" or "SRT": which code variants the reports use
    meanings: str = "standard"  # "standard" or "mangled": code meanings are never to be relied on
    ct_report_mode: str = "single"  # "single" | "cumulative": a new report after each exposure
    patient_items: tuple[str, ...] = ("height", "bmi", "weight")  # patient characteristics, in this order
    height_m: float = 1.75
    dlp_unit: str = "mGy.cm"  # as the scanner spells it ("mGycm", "mGy*cm", ...)
    activity_unit: str = "MBq"
    float_values: bool = False  # also write FloatingPointValue (FD), as newer consoles do
    nuclide: str = "F-18"  # the primary tracer's radionuclide (a key of _NUCLIDES)
    extra_tracers: tuple[TracerSpec, ...] = ()  # dual-tracer studies
    header_start: str = "datetime"  # "datetime" | "time_only" (older consoles: StartTime, no DateTime)
    header_activity_in_mbq: bool = False  # a classic header with MBq typed into its Bq field
    scan_delay_min: float = 55.0  # injection to scan (days for Zr-89)

    def when_injected(self) -> datetime:
        return self.injected_at

    def total_dlp(self, upto: int | None = None) -> float:
        if self.dlp_total_mgycm is not None and upto is None:
            return self.dlp_total_mgycm
        return round(sum(e.dlp_mgycm for e in self.exposures[:upto]), 2)

    def event_uid(self, i: int) -> str:
        """The Irradiation Event UID of exposure i: the same in every report that repeats it."""
        return generate_uid(entropy_srcs=[self.study_uid, "irradiation-event", str(i)])

    def with_(self, **kw) -> StudySpec:
        return replace(self, **kw)


# -- coded entries ------------------------------------------------------------------------------
_ALT = {  # concept -> {"SCT": (value, scheme), "SRT": (value, scheme)}
    "spiral": {"SCT": ("116152004", "SCT"), "SRT": ("P5-08001", "SRT")},
    "ct_procedure": {"SCT": ("77477000", "SCT"), "SRT": ("P5-08000", "SRT")},
    "half_life": {"SCT": ("304283002", "SCT"), "SRT": ("R-42806", "SRT")},
    "radionuclide": {"SCT": ("89457008", "SCT"), "SRT": ("C-10072", "SRT")},
    "agent": {"SCT": ("349358000", "SCT"), "SRT": ("F-61FDB", "SRT")},
    "fdg": {"SCT": ("35321007", "SCT"), "SRT": ("C-B1031", "SRT")},
    "f18": {"SCT": ("77004003", "SCT"), "SRT": ("C-111A1", "SRT")},
    "bmi": {"SCT": ("60621009", "SCT"), "SRT": ("F-01860", "SRT")},
}
_NUCLIDES = {  # CID 4020: (SCT, SRT, meaning)
    "F-18": (("77004003", "SCT"), ("C-111A1", "SRT"), "^18^Fluorine"),
    "Ga-68": (("35337001", "SCT"), ("C-131A3", "SRT"), "^68^Gallium"),
    "Zr-89": (("63360001", "SCT"), ("C-168A4", "SRT"), "^89^Zirconium"),
    "Cu-64": (("3932008", "SCT"), ("C-127A2", "SRT"), "^64^Copper"),
}
_ACQ = {"sequenced": ("113804", "DCM"), "constant_angle": ("113805", "DCM"), "stationary": ("113806", "DCM")}
_PHANTOM = {"head": ("113690", "DCM"), "body": ("113691", "DCM")}


class _Codes:
    def __init__(self, spec: StudySpec):
        self.spec = spec
        self._flip = itertools.cycle([str.lower, str.upper, lambda s: s.title() + " (vendor)"])

    def code(self, value: str, scheme: str, meaning: str) -> Dataset:
        ds = Dataset()
        ds.CodeValue = value
        ds.CodingSchemeDesignator = scheme
        ds.CodeMeaning = next(self._flip)(meaning) if self.spec.meanings == "mangled" else meaning
        return ds

    def alt(self, name: str, meaning: str) -> Dataset:
        value, scheme = _ALT[name][self.spec.snomed]
        return self.code(value, scheme, meaning)

    def nuclide(self, name: str) -> Dataset:
        sct, srt, meaning = _NUCLIDES[name]
        return self.code(*(sct if self.spec.snomed == "SCT" else srt), meaning)


def _item(rel: str, vtype: str, concept: Dataset) -> Dataset:
    ds = Dataset()
    ds.RelationshipType = rel
    ds.ValueType = vtype
    ds.ConceptNameCodeSequence = Sequence([concept])
    return ds


def _container(rel: str, concept: Dataset, children: list[Dataset]) -> Dataset:
    ds = _item(rel, "CONTAINER", concept)
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentSequence = Sequence(children)
    return ds


def _num(c: _Codes, concept: Dataset, value: float, unit: str, unit_meaning: str) -> Dataset:
    ds = _item("CONTAINS", "NUM", concept)
    mv = Dataset()
    if math.isfinite(value):
        mv.NumericValue = _ds_str(value)
    else:
        # A console whose float went NaN/inf: the FD holds it; the DS is written as 0, the worst
        # case for a reader that would fall back to it.
        mv.NumericValue = "0"
    if c.spec.float_values or not math.isfinite(value):
        mv.FloatingPointValue = value
    mv.MeasurementUnitsCodeSequence = Sequence([c.code(unit, "UCUM", unit_meaning)])
    ds.MeasuredValueSequence = Sequence([mv])
    return ds


def _ds_str(v: float) -> str:
    s = f"{v:.6g}"
    return s if len(s) <= 16 else f"{v:.8e}"


def _coded(rel: str, concept: Dataset, value: Dataset) -> Dataset:
    ds = _item(rel, "CODE", concept)
    ds.ConceptCodeSequence = Sequence([value])
    return ds


def _local(dt: datetime, spec: StudySpec) -> datetime:
    return dt.astimezone(ZoneInfo(spec.timezone))


def _dt_str(dt: datetime, spec: StudySpec) -> str:
    return _local(dt, spec).strftime("%Y%m%d%H%M%S")


# -- the common modules -------------------------------------------------------------------------
def _base(
    spec: StudySpec, sop_class: str, modality: str, series_uid: str, series_no: int, number: int
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    injected = _local(spec.when_injected(), spec)
    study_start = injected + timedelta(minutes=spec.scan_delay_min)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_start.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study_start.strftime("%H%M%S")
    if spec.write_tz_offset:
        ds.TimezoneOffsetFromUTC = study_start.strftime("%z")
    ds.AccessionNumber = spec.accession or ""
    ds.Modality = modality
    ds.Manufacturer = "suitemon simulator"
    ds.ReferringPhysicianName = ""
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_no
    ds.InstanceNumber = number
    return ds


def _file_meta(ds: Dataset) -> Dataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = IMPLEMENTATION_UID
    ds.file_meta = fm
    return ds


def _pixels(ds: Dataset, rows: int, cols: int, frames: int = 1) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = _blank(rows * cols * 2 * frames)


_BLANKS: dict[int, bytes] = {}


def _blank(n: int) -> bytes:
    # One shared buffer per size: a 1,000-slice study must not cost 1,000 copies of zeros.
    b = _BLANKS.get(n)
    if b is None:
        b = _BLANKS[n] = bytes(n)
    return b


def ct_slice(spec: StudySpec, series_uid: str, i: int, enhanced: bool = False) -> Dataset:
    ds = _base(spec, ENHANCED_CT if enhanced else CT_IMAGE, "CT", series_uid, 2, i + 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ProtocolName = spec.protocol
    ds.KVP = 120
    ds.SliceThickness = 3.0
    ds.ImagePositionPatient = [-250.0, -250.0, -3.0 * i]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.976, 0.976]
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    _pixels(ds, spec.ct_rows, spec.ct_cols, frames=2 if enhanced else 1)
    return _file_meta(ds)


def _tracers(spec: StudySpec) -> list[TracerSpec]:
    header_mbq = spec.activity_mbq if spec.header_activity_mbq is None else spec.header_activity_mbq
    start = spec.when_injected() + timedelta(minutes=spec.header_start_shift_min)
    first = TracerSpec(
        spec.nuclide,
        "Fludeoxyglucose" if spec.nuclide == "F-18" else spec.nuclide,
        header_mbq,
        start,
        spec.half_life_s,
    )
    return [first, *spec.extra_tracers]


def _rp_info(spec: StudySpec, c: _Codes, enhanced: bool, t: TracerSpec) -> Dataset:
    rp = Dataset()
    rp.Radiopharmaceutical = t.agent
    rp.RadiopharmaceuticalStartTime = _local(t.injected_at, spec).strftime("%H%M%S")
    if spec.header_start == "datetime":
        rp.RadiopharmaceuticalStartDateTime = _dt_str(t.injected_at, spec)
    # Bq in classic PET Image Storage, MBq in Enhanced PET (PS3.3 C.8.9.4 / C.8.22.5)
    in_mbq = enhanced or spec.header_activity_in_mbq
    rp.RadionuclideTotalDose = _ds_str(t.activity_mbq if in_mbq else t.activity_mbq * 1e6)
    rp.RadionuclideHalfLife = _ds_str(t.half_life_s)
    rp.RadionuclidePositronFraction = "0.9673"
    rp.RadionuclideCodeSequence = Sequence([c.nuclide(t.nuclide)])
    return rp


def pet_slice(spec: StudySpec, series_uid: str, i: int, frames: int = 1) -> Dataset:
    enhanced = spec.pet_class == "enhanced"
    c = _Codes(spec)
    ds = _base(spec, ENHANCED_PET if enhanced else PET_IMAGE, "PT", series_uid, 3, i + 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientWeight = _ds_str(spec.weight_kg)
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT"]
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.RadiopharmaceuticalInformationSequence = Sequence(
        [_rp_info(spec, c, enhanced, t) for t in _tracers(spec)]
    )
    if not enhanced:
        ds.ImagePositionPatient = [-350.0, -350.0, -4.0 * i]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [4.07, 4.07]
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1.5
    _pixels(ds, spec.pet_rows, spec.pet_cols, frames=frames)
    return _file_meta(ds)


def _sr_root(
    spec: StudySpec, sop_class: str, concept: Dataset, template: str, children: list[Dataset]
) -> Dataset:
    ds = _base(spec, sop_class, "SR", generate_uid(), 99, 1)
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([concept])
    ds.ContinuityOfContent = "SEPARATE"
    tpl = Dataset()
    tpl.MappingResource = "DCMR"
    tpl.TemplateIdentifier = template
    ds.ContentTemplateSequence = Sequence([tpl])
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentSequence = Sequence(children)
    return _file_meta(ds)


def ct_dose_report(spec: StudySpec, sop_class: str | None = None, upto: int | None = None) -> Dataset:
    """The CT dose report after the first ``upto`` exposures (default: all of them)."""
    c = _Codes(spec)
    events = []
    exposures = spec.exposures[:upto]
    for i, e in enumerate(exposures):
        acq = (
            c.alt("spiral", "Spiral Acquisition")
            if e.acquisition_type == "spiral"
            else c.code(
                *_ACQ[e.acquisition_type], e.acquisition_type.replace("_", " ").title() + " Acquisition"
            )
        )
        uid = _item("CONTAINS", "UIDREF", c.code("113769", "DCM", "Irradiation Event UID"))
        uid.UID = spec.event_uid(i)
        proto = _item("CONTAINS", "TEXT", c.code("125203", "DCM", "Acquisition Protocol"))
        proto.TextValue = e.protocol or spec.protocol
        params = _container(
            "CONTAINS",
            c.code("113822", "DCM", "CT Acquisition Parameters"),
            [
                _num(c, c.code("113824", "DCM", "Exposure Time"), 4.2, "s", "second"),
            ],
        )
        dose = _container(
            "CONTAINS",
            c.code("113829", "DCM", "CT Dose"),
            [
                _num(c, c.code("113830", "DCM", "Mean CTDIvol"), e.ctdivol_mgy, "mGy", "mGy"),
                _coded(
                    "CONTAINS",
                    c.code("113835", "DCM", "CTDIw Phantom Type"),
                    c.code(*_PHANTOM[e.phantom], f"IEC {e.phantom.title()} Dosimetry Phantom"),
                ),
                _num(c, c.code("113838", "DCM", "DLP"), e.dlp_mgycm, spec.dlp_unit, "mGy.cm"),
            ],
        )
        events.append(
            _container(
                "CONTAINS",
                c.code("113819", "DCM", "CT Acquisition"),
                [
                    proto,
                    _coded("CONTAINS", c.code("113820", "DCM", "CT Acquisition Type"), acq),
                    uid,
                    params,
                    dose,
                ],
            )
        )
    accumulated = _container(
        "CONTAINS",
        c.code("113811", "DCM", "CT Accumulated Dose Data"),
        [
            _num(
                c,
                c.code("113812", "DCM", "Total Number of Irradiation Events"),
                len(exposures),
                "{events}",
                "events",
            ),
            _num(
                c,
                c.code("113813", "DCM", "CT Dose Length Product Total"),
                spec.total_dlp(upto),
                spec.dlp_unit,
                "mGy.cm",
            ),
        ],
    )
    procedure = _coded(
        "HAS CONCEPT MOD",
        c.code("121058", "DCM", "Procedure reported"),
        c.alt("ct_procedure", "Computed Tomography X-Ray"),
    )
    return _sr_root(
        spec,
        sop_class or spec.ct_report_class,
        c.code("113701", "DCM", "X-Ray Radiation Dose Report"),
        "10011",
        [procedure, accumulated, *events],
    )


_ACTIVITY_PER_MBQ = {"MBq": 1.0, "GBq": 1e-3, "kBq": 1e3, "Bq": 1e6, "mCi": 1 / 37.0}


def _administration(spec: StudySpec, c: _Codes, t: TracerSpec, start: datetime, primary: bool) -> Dataset:
    start_item = _item("CONTAINS", "DATETIME", c.code("123003", "DCM", "Radiopharmaceutical Start DateTime"))
    start_item.DateTime = _dt_str(start, spec)
    stop_item = _item("CONTAINS", "DATETIME", c.code("123004", "DCM", "Radiopharmaceutical Stop DateTime"))
    stop_item.DateTime = _dt_str(start + timedelta(seconds=30), spec)
    uid = _item("CONTAINS", "UIDREF", c.code("113503", "DCM", "Radiopharmaceutical Administration Event UID"))
    uid.UID = generate_uid()
    agent = (
        c.alt("fdg", "Fluorodeoxyglucose F^18^")
        if t.nuclide == "F-18"
        else c.code("SIM-1", "99SUITEMON", t.agent)
    )
    activity = spec.activity_mbq if primary else t.activity_mbq
    # TID 10022: radionuclide and half-life are properties of the agent (HAS PROPERTIES from the CODE
    # item); the RRD SR IOD does not allow HAS PROPERTIES from a CONTAINER (DCMTK's dsrdump refuses it).
    agent_item = _coded("CONTAINS", c.alt("agent", "Radiopharmaceutical agent"), agent)
    half = _num(c, c.alt("half_life", "Radionuclide Half Life"), t.half_life_s, "s", "second")
    half.RelationshipType = "HAS PROPERTIES"
    agent_item.ContentSequence = Sequence(
        [_coded("HAS PROPERTIES", c.alt("radionuclide", "Radionuclide"), c.nuclide(t.nuclide)), half]
    )
    return _container(
        "CONTAINS",
        c.code("113502", "DCM", "Radiopharmaceutical Administration"),
        [
            agent_item,
            start_item,
            stop_item,
            _num(
                c,
                c.code("113507", "DCM", "Administered activity"),
                activity * _ACTIVITY_PER_MBQ[spec.activity_unit],
                spec.activity_unit,
                spec.activity_unit,
            ),
            uid,
        ],
    )


def _patient_item(spec: StudySpec, c: _Codes, name: str) -> Dataset:
    if name == "weight":
        return _num(c, c.code("29463-7", "LN", "Patient Weight"), spec.weight_kg, "kg", "kg")
    if name == "height":
        return _num(c, c.code("8302-2", "LN", "Patient Height"), spec.height_m, "m", "m")
    if name == "bmi":
        return _num(
            c, c.alt("bmi", "Body Mass Index"), round(spec.weight_kg / spec.height_m**2, 1), "kg/m2", "kg/m2"
        )
    raise ValueError(f"unknown patient characteristic {name!r}")


def rp_dose_report(spec: StudySpec) -> Dataset:
    c = _Codes(spec)
    tracers = _tracers(spec)
    start = spec.when_injected() + timedelta(minutes=spec.report_start_shift_min)
    admins = [_administration(spec, c, tracers[0], start, True)]
    admins += [_administration(spec, c, t, t.injected_at, False) for t in tracers[1:]]
    patient = _container(
        "CONTAINS",
        c.code("121118", "DCM", "Patient Characteristics"),
        [_patient_item(spec, c, n) for n in spec.patient_items],
    )
    return _sr_root(
        spec,
        RP_DOSE_SR,
        c.code("113500", "DCM", "Radiopharmaceutical Radiation Dose Report"),
        "10021",
        [*admins, patient],
    )


def secondary_capture(spec: StudySpec) -> Dataset:
    ds = _base(spec, SECONDARY_CAPTURE, "OT", generate_uid(), 100, 1)
    ds.ConversionType = "WSD"
    _pixels(ds, 64, 64)
    return _file_meta(ds)


def build_study(spec: StudySpec) -> Iterator[Dataset]:
    """CT slices, PET slices (or one Enhanced PET multi-frame instance), then the reports."""
    ct_series = generate_uid()
    for i in range(spec.ct_slices):
        yield ct_slice(spec, ct_series, i)
    pet_series = generate_uid()
    if spec.pet_class == "enhanced":
        if spec.pet_slices:
            yield pet_slice(spec, pet_series, 0, frames=spec.pet_slices)
    else:
        for i in range(spec.pet_slices):
            yield pet_slice(spec, pet_series, i)
    if spec.ct_report and spec.ct_report_mode == "cumulative":
        for k in range(1, len(spec.exposures) + 1):
            yield ct_dose_report(spec, upto=k)  # each repeats the earlier events, same UIDs
    elif spec.ct_report:
        yield ct_dose_report(spec)
    if spec.rp_report:
        yield rp_dose_report(spec)


def write_study(spec: StudySpec, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, ds in enumerate(build_study(spec)):
        p = directory / f"{n:05d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths
