"""One spooled file -> the facts suitemon needs, or the reason it cannot be used.

Runs in the parser process (dicom_worker.py). Images are read without pixel data and only for the
attributes listed in ``IMAGE_TAGS``; structured reports are read whole (they are small).
Before pydicom sees the bytes, the file's structure is checked (``dicom_structure``), so a
truncated file is caught even where pydicom would quietly read a short value.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import tzinfo
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from suitemon.daemon.dicom import values as dv
from suitemon.daemon.dicom.classes import STORAGE_CLASSES
from suitemon.daemon.dicom.dose_pet import TOTAL_DOSE_UNIT, PetHeader, pet_header
from suitemon.daemon.dicom.dose_sr import (
    CtDoseReport,
    RpDoseReport,
    ct_dose_report,
    report_kind,
    rp_dose_report,
)
from suitemon.daemon.dicom.structure import layout
from suitemon.daemon.pseudonym import accession_ref, patient_ref

IMAGE_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "AccessionNumber",
    "PatientID",
    "Modality",
    "ProtocolName",
    "TimezoneOffsetFromUTC",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "PatientWeight",
    "RadiopharmaceuticalInformationSequence",
    "Rows",
    "Columns",
    "BitsAllocated",
    "SamplesPerPixel",
    "NumberOfFrames",
]


@dataclass(frozen=True)
class Identity:
    sop_class: str
    sop_instance: str | None = None
    study_uid: str | None = None
    accession: str | None = None
    patient_ref: str | None = None


@dataclass(frozen=True)
class Parsed:
    ident: Identity
    kind: str  # ct_image | pet_image | ct_dose | rp_dose | other
    protocol: str | None = None
    pet: PetHeader | None = None
    ct_dose: CtDoseReport | None = None
    rp_dose: RpDoseReport | None = None

    def unreadable(self) -> tuple[str, ...]:
        for part in (self.ct_dose, self.rp_dose, self.pet):
            if part is not None:
                return part.unreadable
        return ()


@dataclass(frozen=True)
class Unparseable:
    reason: str
    ident: Identity | None = None


def parse_file(path: Path, *, key: bytes, site_tz: tzinfo) -> Parsed | Unparseable:
    try:
        data = path.read_bytes()
    except OSError as err:
        return Unparseable(f"cannot read the spool file: {err.strerror or err}")
    return parse_bytes(data, key=key, site_tz=site_tz)


def parse_bytes(data: bytes, *, key: bytes, site_tz: tzinfo) -> Parsed | Unparseable:
    ds: Dataset | None = None
    ident: Identity | None = None
    try:
        lay = layout(data)
        entry = STORAGE_CLASSES.get(lay.sop_class)
        if entry is None:
            raise dv.BadValue(f"SOP class {lay.sop_class or '(none)'} is not one suitemon accepts")
        family = entry[1]
        if family == "sr":
            ds = dcmread(BytesIO(data))
        else:
            ds = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=IMAGE_TAGS)
        ident = _identity(ds, key)
        if ident.sop_class != lay.sop_class:
            raise dv.BadValue(
                f"file meta says SOP class {lay.sop_class} but the dataset says {ident.sop_class}"
            )
        if family != "sr":
            _check_pixels(ds, lay)
        return _facts(ds, ident, family, site_tz)
    except dv.BadValue as err:
        return Unparseable(str(err), ident or _best_effort(ds or _lenient(data), key))
    except (
        InvalidDicomError,
        EOFError,
        struct.error,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OverflowError,
        NotImplementedError,
    ) as err:
        return Unparseable(
            f"pydicom cannot read it: {type(err).__name__}: {str(err)[:200]}", ident or _best_effort(ds, key)
        )


def _identity(ds: Dataset, key: bytes) -> Identity:
    pid = dv.text(ds, "PatientID")
    acc = dv.text(ds, "AccessionNumber")
    return Identity(
        sop_class=dv.uid(ds, "SOPClassUID", required=True),
        sop_instance=dv.uid(ds, "SOPInstanceUID", required=True),
        study_uid=dv.uid(ds, "StudyInstanceUID", required=True),
        accession=accession_ref(acc, key) if acc else None,
        patient_ref=patient_ref(pid, key) if pid else None,
    )


def _lenient(data: bytes) -> Dataset | None:
    # The file failed its structure check; its first elements may still say whose it is.
    try:
        return dcmread(
            BytesIO(data),
            stop_before_pixels=True,
            force=True,
            specific_tags=[
                "SOPClassUID",
                "SOPInstanceUID",
                "StudyInstanceUID",
                "AccessionNumber",
                "PatientID",
            ],
        )
    except Exception:  # anything at all: this is only a courtesy for the record
        return None


def _best_effort(ds: Dataset | None, key: bytes) -> Identity | None:
    """Whatever identifies an unusable instance, so its study still counts it."""
    if ds is None:
        return None
    out = {}
    for field, fn in (
        ("sop_class", lambda: dv.uid(ds, "SOPClassUID")),
        ("sop_instance", lambda: dv.uid(ds, "SOPInstanceUID")),
        ("study_uid", lambda: dv.uid(ds, "StudyInstanceUID")),
        ("accession", lambda: (a := dv.text(ds, "AccessionNumber")) and accession_ref(a, key)),
    ):
        try:
            out[field] = fn()
        except dv.BadValue:
            out[field] = None
    try:
        pid = dv.text(ds, "PatientID")
        out["patient_ref"] = patient_ref(pid, key) if pid else None
    except dv.BadValue:
        out["patient_ref"] = None
    return Identity(**{**out, "sop_class": out["sop_class"] or ""})


def _check_pixels(ds: Dataset, lay) -> None:
    if not lay.has_pixels:
        raise dv.BadValue("missing required attribute PixelData (7FE0,0010)")
    rows = dv.integer(ds, "Rows", required=True)
    cols = dv.integer(ds, "Columns", required=True)
    bits = dv.integer(ds, "BitsAllocated", required=True)
    spp = dv.integer(ds, "SamplesPerPixel") or 1
    frames = dv.integer(ds, "NumberOfFrames") or 1
    if min(rows, cols, bits, spp, frames) <= 0:
        raise dv.BadValue(
            f"image description out of range: {rows} x {cols}, {bits} bits, {spp} samples, {frames} frames"
        )
    if lay.pixel_length is None:
        return  # encapsulated: fragments were checked by the structure walk
    needed = (rows * cols * spp * frames * bits + 7) // 8
    if lay.pixel_length < needed:
        raise dv.BadValue(
            f"PixelData holds {lay.pixel_length} bytes; {rows} x {cols} x {frames} frames of "
            f"{bits}-bit samples need {needed}"
        )


def _facts(ds: Dataset, ident: Identity, family: str, site_tz: tzinfo) -> Parsed:
    if family == "ct_image":
        return Parsed(ident, "ct_image", protocol=dv.text(ds, "ProtocolName"))
    if family == "pet_image":
        if ident.sop_class not in TOTAL_DOSE_UNIT:
            return Parsed(ident, "other")
        return Parsed(ident, "pet_image", pet=pet_header(ds, ident.sop_class, site_tz))
    if family == "sr":
        dv.sequence(ds, "ConceptNameCodeSequence", required=True)  # the document title is Type 1
        kind = report_kind(ds)
        if kind is not None:  # a dose report without content would pass for "no dose": refuse it
            dv.sequence(ds, "ContentSequence", required=True)
        if kind == "ct_dose":
            return Parsed(ident, "ct_dose", ct_dose=ct_dose_report(ds))
        if kind == "rp_dose":
            return Parsed(ident, "rp_dose", rp_dose=rp_dose_report(ds, site_tz))
    return Parsed(ident, "other")
