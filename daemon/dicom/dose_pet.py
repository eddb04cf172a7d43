"""Administered-activity facts from a PET image header (every SUV the scanner computes uses them).

RadionuclideTotalDose is in Bq in the classic PET Image Storage class and in MBq in the
Enhanced PET classes (PS3.3 C.8.9.4 vs C.8.22.5): the unit follows the SOP class, and a
value written in the wrong unit shows up as a factor of 10^6 in the reconciliation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from pydicom.dataset import Dataset

from suitemon.daemon.dicom import values as dv
from suitemon.daemon.dicom.codes import RADIONUCLIDES
from suitemon.daemon.dicom.dose_sr import code_of

PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
ENHANCED_PET = "1.2.840.10008.5.1.4.1.1.130"
LEGACY_ENHANCED_PET = "1.2.840.10008.5.1.4.1.1.128.1"

# SOP class -> (unit of RadionuclideTotalDose, factor to MBq)
TOTAL_DOSE_UNIT: dict[str, tuple[str, float]] = {
    PET_IMAGE: ("Bq", 1e-6),
    ENHANCED_PET: ("MBq", 1.0),
    LEGACY_ENHANCED_PET: ("MBq", 1.0),
}


@dataclass(frozen=True)
class PetHeader:
    activity_mbq: float | None
    activity_unit: str  # the unit the header value was read in (by SOP class)
    start_at: datetime | None
    half_life_s: float | None
    radionuclide: str | None
    weight_kg: float | None

    def key(self) -> tuple:
        return (self.activity_mbq, self.start_at, self.half_life_s, self.weight_kg)


def pet_header(ds: Dataset, sop_class: str, site_tz: tzinfo) -> PetHeader:
    unit, factor = TOTAL_DOSE_UNIT[sop_class]
    tz = dv.dataset_tz(ds, site_tz)
    weight = dv.number(ds, "PatientWeight")
    items = dv.sequence(ds, "RadiopharmaceuticalInformationSequence")
    if not items:
        return PetHeader(None, unit, None, None, None, weight)
    rp = items[0]
    total = dv.number(rp, "RadionuclideTotalDose")
    start = dv.dt_value(rp, "RadiopharmaceuticalStartDateTime", default_tz=tz)
    if start is None:  # older headers: a time of day, dated by the series
        start = dv.tm_with_date(rp, "RadiopharmaceuticalStartTime", ds,
                                ("SeriesDate", "AcquisitionDate", "StudyDate"), default_tz=tz)
    half = dv.number(rp, "RadionuclideHalfLife")
    nuclide = None
    codes = dv.sequence(rp, "RadionuclideCodeSequence")
    if codes:
        code = code_of(codes[0])
        nuclide = RADIONUCLIDES.get(code, f"{code[0]} ({code[1]})")
    return PetHeader(total * factor if total is not None else None, unit, start, half, nuclide, weight)
