"""Every code suitemon matches on, checked against DICOM PS3.16 as pydicom ships it.

pydicom's ``sr`` package carries the PS3.16 concepts (DCM, SCT, LN, ... with their meanings and
context groups) and the SNOMED RT <-> SNOMED CT mapping. It is an independent copy of the
standard: a code whose meaning there is not the concept we file it under is a wrong code
(F-01860 is Body Mass Index; 113808 is "ICRP Pub 60"). SRT codes have no meanings in pydicom,
so each is checked through its SCT partner, and each concept must carry both spellings.
"""

from __future__ import annotations

import pytest
from pydicom.sr._concepts_dict import concepts as PS3_16
from pydicom.sr._snomed_dict import mapping as SNOMED

from suitemon.daemon.dicom import codes
from suitemon.daemon.dicom.dose_sr import RADIOPHARMACEUTICALS

# Our name -> what PS3.16 calls it (CodeMeaning, compared case-insensitively, or a set of them).
MEANINGS = {
    "xray_dose_report": "X-Ray Radiation Dose Report",
    "ct_accumulated": "CT Accumulated Dose Data",
    "ct_event_count": "Total Number of Irradiation Events",
    "ct_dlp_total": "CT Dose Length Product Total",
    "ct_acquisition": "CT Acquisition",
    "ct_acquisition_type": "CT Acquisition Type",
    "ct_dose": "CT Dose",
    "ctdivol": "Mean CTDIvol",
    "dlp": "DLP",
    "ct_phantom": "CTDIw Phantom Type",
    "acquisition_protocol": "Acquisition Protocol",
    "irradiation_event_uid": "Irradiation Event UID",
    "ct_dose_check_details": "Dose Check Alert Details",
    "ct_dose_check_notification": "Dose Check Notification Details",
    "rp_dose_report": "Radiopharmaceutical Radiation Dose Report",
    "rp_administration": "Radiopharmaceutical Administration",
    "rp_administration_uid": "Radiopharmaceutical Administration Event UID",
    "administered_activity": "Administered activity",
    "pre_administration_activity": "Pre-Administration Measured Activity",
    "post_administration_activity": "Post-Administration Measured Activity",
    "rp_start": "Radiopharmaceutical Start DateTime",
    "rp_stop": "Radiopharmaceutical Stop DateTime",
    "half_life": "Half-life of radiopharmaceutical (qualifier value)",
    "radionuclide": "Radioactive isotope (substance)",
    "radiopharmaceutical": "Radiopharmaceuticals (product)",
    "body_mass_index": "Body mass index (observable entity)",
    "sequenced": "Sequenced Acquisition",
    "spiral": "Spiral Acquisition",
    "constant_angle": "Constant Angle Acquisition",
    "stationary": "Stationary Acquisition",
    "free": "Free Acquisition",
    "cone_beam": "Cone Beam Acquisition",
    "head": "IEC Head Dosimetry Phantom",
    "body": "IEC Body Dosimetry Phantom",
    "nema_xr21": "NEMA XR21-2000 Phantom",
    "F-18": "^18^Fluorine",
    "Ga-68": "^68^Gallium",
    "C-11": "^11^Carbon",
    "N-13": "^13^Nitrogen",
    "O-15": "^15^Oxygen",
    "Cu-64": "^64^Copper",
    "Zr-89": "^89^Zirconium",
    "Rb-82": "^82^Rubidium",
    "FDG": "Fluorodeoxyglucose F^18^",
}
# Codes PS3.16 as shipped by pydicom does not list with a meaning; each has its source in docs/decisions.md.
NOT_IN_PYDICOM = {
    ("29463-7", "LN"): "body_weight",  # LOINC "Body weight", TID 10023 row "Patient Weight"
    ("27113001", "SCT"): "body_weight",  # SNOMED CT "Body weight (observable entity)"
    ("F-61FDB", "SRT"): "radiopharmaceutical",  # TID 10022 "Radiopharmaceutical agent" (DCMTK CODE_SRT_...)
}


def meanings(code: tuple[str, str]) -> set[str]:
    """Every meaning PS3.16 gives the code (a few codes sit in several context groups under two wordings)."""
    value, scheme = code
    if scheme == "SRT":
        value, scheme = SNOMED["SRT"].get(value), "SCT"
        if value is None:
            return set()
    return {by_code[value][0].casefold() for by_code in PS3_16.get(scheme, {}).values() if value in by_code}


def tables():
    for name, pairs in codes.CONCEPTS.items():
        for code in sorted(pairs):
            yield name, code
    for table in (codes.ACQUISITION_TYPES, codes.PHANTOMS, codes.RADIONUCLIDES, RADIOPHARMACEUTICALS):
        for code, name in table.items():
            yield name, code


@pytest.mark.parametrize("name,code", list(tables()), ids=lambda x: x if isinstance(x, str) else "/".join(x))
def test_every_code_means_what_we_file_it_under(name, code):
    if code in NOT_IN_PYDICOM:
        assert NOT_IN_PYDICOM[code] == name
        return
    found = meanings(code)
    assert found, f"{code} is not in PS3.16 as pydicom ships it"
    assert MEANINGS[name].casefold() in found, f"{code} is {found}, not {name}"


def snomed_pairs():
    for name, pairs in codes.CONCEPTS.items():
        yield name, set(pairs)
    for table in (codes.ACQUISITION_TYPES, codes.RADIONUCLIDES, RADIOPHARMACEUTICALS):
        by_name: dict[str, set] = {}
        for code, name in table.items():
            by_name.setdefault(name, set()).add(code)
        yield from by_name.items()


@pytest.mark.parametrize("name,pairs", list(snomed_pairs()), ids=lambda x: x if isinstance(x, str) else "")
def test_each_snomed_concept_is_matched_in_both_its_srt_and_sct_spellings(name, pairs):
    for value, scheme in pairs:
        if scheme == "SCT" and (alt := SNOMED["SCT"].get(value)):
            assert (alt, "SRT") in pairs, f"{name}: SCT {value} without its SRT spelling {alt}"
        if scheme == "SRT" and (alt := SNOMED["SRT"].get(value)):
            assert (alt, "SCT") in pairs, f"{name}: SRT {value} without its SCT spelling {alt}"


def test_body_mass_index_is_not_a_weight_and_icrp60_is_not_cone_beam():
    assert ("F-01860", "SRT") not in codes.CONCEPTS["body_weight"]
    assert codes.concept_is(("F-01860", "SRT"), "body_mass_index")
    assert codes.concept_is(("60621009", "SCT"), "body_mass_index")
    assert ("113808", "DCM") not in codes.ACQUISITION_TYPES


def test_unit_spellings_map_to_one_ucum_unit_and_case_is_never_folded():
    assert {s: codes.ucum_unit(s) for s in ("mGy.cm", "mGycm", "mGy*cm", "mGy cm", "sec", "hr")} == {
        "mGy.cm": "mGy.cm",
        "mGycm": "mGy.cm",
        "mGy*cm": "mGy.cm",
        "mGy cm": "mGy.cm",
        "sec": "s",
        "hr": "h",
    }
    assert codes.ucum_unit("MGy.cm") is None and codes.ucum_unit("mgy") is None  # megagray; not UCUM
    assert all(target in codes.UNITS for target in codes.UNIT_SPELLINGS.values())
