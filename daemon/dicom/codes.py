"""Coded concepts of the dose reports, as data: (code value, coding scheme) pairs, never meanings.

Vendors differ in the case and wording of code meanings, and the same concept appears
under SNOMED RT (``SRT``, old) and SNOMED CT (``SCT``, new) codes, so a concept is the
set of pairs that stand for it. Sources: DICOM PS3.16 TID 10011/10012/10013 (CT dose),
TID 10021/10022/10023 (radiopharmaceutical dose), CID 10013 (CT acquisition type), CID 4020 (PET
radionuclides); every pair is checked against pydicom's copy of the PS3.16 concepts and its
SRT <-> SCT mapping by tests/test_dicom_codes.py (docs/decisions.md, "DICOM codes").
"""

from __future__ import annotations

Code = tuple[str, str]  # (code value, normalised coding scheme designator)

# Old designators that mean the same scheme.
SCHEME_ALIASES = {"SNM3": "SRT", "99SDM": "SRT"}


def normalise_scheme(scheme: str) -> str:
    s = scheme.strip().upper()
    return SCHEME_ALIASES.get(s, s)


CONCEPTS: dict[str, frozenset[Code]] = {
    # CT radiation dose report (TID 10011) and its parts
    "xray_dose_report": frozenset({("113701", "DCM")}),
    "ct_accumulated": frozenset({("113811", "DCM")}),
    "ct_event_count": frozenset({("113812", "DCM")}),
    "ct_dlp_total": frozenset({("113813", "DCM")}),
    "ct_acquisition": frozenset({("113819", "DCM")}),
    "ct_acquisition_type": frozenset({("113820", "DCM")}),
    "ct_dose": frozenset({("113829", "DCM")}),
    "ctdivol": frozenset({("113830", "DCM")}),
    "dlp": frozenset({("113838", "DCM")}),
    "ct_phantom": frozenset({("113835", "DCM")}),
    "acquisition_protocol": frozenset({("125203", "DCM")}),
    "irradiation_event_uid": frozenset({("113769", "DCM")}),
    # Dose-check sub-trees carry alert values, not delivered dose: never read as dose.
    "ct_dose_check_details": frozenset({("113900", "DCM")}),  # Dose Check Alert Details
    "ct_dose_check_notification": frozenset({("113908", "DCM")}),  # Dose Check Notification Details
    # Radiopharmaceutical radiation dose report (TID 10021)
    "rp_dose_report": frozenset({("113500", "DCM")}),
    "rp_administration": frozenset({("113502", "DCM")}),
    "rp_administration_uid": frozenset({("113503", "DCM")}),
    "administered_activity": frozenset({("113507", "DCM")}),
    "pre_administration_activity": frozenset({("113508", "DCM")}),
    "post_administration_activity": frozenset({("113509", "DCM")}),
    "rp_start": frozenset({("123003", "DCM")}),
    "rp_stop": frozenset({("123004", "DCM")}),
    "half_life": frozenset({("R-42806", "SRT"), ("304283002", "SCT")}),
    "radionuclide": frozenset({("C-10072", "SRT"), ("89457008", "SCT")}),
    # TID 10022 used (F-61FDB, SRT) "Radiopharmaceutical agent"; SNOMED maps 349358000 to C-B02C9.
    "radiopharmaceutical": frozenset({("F-61FDB", "SRT"), ("C-B02C9", "SRT"), ("349358000", "SCT")}),
    # Patient characteristics (TID 10023): weight is LOINC 29463-7 (SNOMED CT 27113001 from other
    # templates). (F-01860, SRT) = (60621009, SCT) is Body Mass Index: never a weight.
    "body_weight": frozenset({("29463-7", "LN"), ("27113001", "SCT")}),
    "body_mass_index": frozenset({("F-01860", "SRT"), ("60621009", "SCT")}),
}

ACQUISITION_TYPES: dict[Code, str] = {
    ("113804", "DCM"): "sequenced",
    ("P5-08001", "SRT"): "spiral",
    ("116152004", "SCT"): "spiral",
    ("113805", "DCM"): "constant_angle",
    ("113806", "DCM"): "stationary",
    ("113807", "DCM"): "free",
    ("702569007", "SCT"): "cone_beam",  # not (113808, DCM): that is "ICRP Pub 60"
    ("R-FB8F1", "SRT"): "cone_beam",
}

# Localiser (scout) exposures carry tiny CTDIvol values that no reference level is about.
NOT_COMPARED_TO_CTDI_LEVELS = frozenset({"constant_angle"})

PHANTOMS: dict[Code, str] = {
    ("113690", "DCM"): "head",  # IEC Head Dosimetry Phantom (16 cm)
    ("113691", "DCM"): "body",  # IEC Body Dosimetry Phantom (32 cm)
    ("113692", "DCM"): "nema_xr21",
}

RADIONUCLIDES: dict[Code, str] = {
    ("77004003", "SCT"): "F-18",
    ("C-111A1", "SRT"): "F-18",
    ("35337001", "SCT"): "Ga-68",
    ("C-131A3", "SRT"): "Ga-68",
    ("40565003", "SCT"): "C-11",
    ("C-105A1", "SRT"): "C-11",
    ("21576001", "SCT"): "N-13",
    ("C-107A1", "SRT"): "N-13",
    ("129504001", "SCT"): "O-15",
    ("C-B1038", "SRT"): "O-15",
    ("3932008", "SCT"): "Cu-64",
    ("C-127A2", "SRT"): "Cu-64",
    ("63360001", "SCT"): "Zr-89",
    ("C-168A4", "SRT"): "Zr-89",
    ("79197006", "SCT"): "Rb-82",
    ("C-159A2", "SRT"): "Rb-82",
}

# Half-lives in seconds (domain.md section 6): used only when neither the header nor
# the dose report gives one.
HALF_LIVES_S: dict[str, float] = {
    "F-18": 6586.2,
    "Ga-68": 67.83 * 60,
    "C-11": 20.385 * 60,
    "N-13": 9.965 * 60,
    "O-15": 122.24,
    "Cu-64": 12.7 * 3600,
    "Zr-89": 78.4 * 3600,
    "Rb-82": 75.0,
}

# UCUM units -> (quantity, factor to the unit suitemon reports in).
UNITS: dict[str, tuple[str, float]] = {
    "mGy": ("dose_mGy", 1.0),
    "Gy": ("dose_mGy", 1000.0),
    "uGy": ("dose_mGy", 1e-3),
    "mGy.cm": ("dlp_mGy.cm", 1.0),
    "Gy.cm": ("dlp_mGy.cm", 1000.0),
    "mGy.mm": ("dlp_mGy.cm", 0.1),
    "MBq": ("activity_MBq", 1.0),
    "Bq": ("activity_MBq", 1e-6),
    "kBq": ("activity_MBq", 1e-3),
    "GBq": ("activity_MBq", 1e3),
    "mCi": ("activity_MBq", 37.0),
    "uCi": ("activity_MBq", 0.037),
    "s": ("time_s", 1.0),
    "min": ("time_s", 60.0),
    "h": ("time_s", 3600.0),
    "d": ("time_s", 86400.0),
    "kg": ("mass_kg", 1.0),
    "g": ("mass_kg", 1e-3),
    "[lb_av]": ("mass_kg", 0.45359237),
}

# Spellings scanners write for the UCUM units above (strict about meaning, tolerant about spelling).
# Each is mapped explicitly to the one UCUM unit it can only mean; case is never folded, because
# in UCUM it carries meaning ("MGy" is megagray, "mGy" milligray). Listed in docs/dicom.md.
UNIT_SPELLINGS: dict[str, str] = {
    "mGycm": "mGy.cm",
    "mGy*cm": "mGy.cm",
    "mGy cm": "mGy.cm",
    "mGy\u00b7cm": "mGy.cm",
    "Gycm": "Gy.cm",
    "Gy*cm": "Gy.cm",
    "Gy cm": "Gy.cm",
    "mGymm": "mGy.mm",
    "mGy*mm": "mGy.mm",
    "mGy mm": "mGy.mm",
    "\u00b5Gy": "uGy",
    "\u03bcGy": "uGy",
    "\u00b5Ci": "uCi",
    "\u03bcCi": "uCi",
    "sec": "s",
    "hr": "h",
    "lb": "[lb_av]",
}


def ucum_unit(spelled: str) -> str | None:
    """The UCUM unit a scanner's unit spelling stands for, or None when it is not one we know."""
    u = spelled.strip()
    if u in UNITS:
        return u
    return UNIT_SPELLINGS.get(u)


def concept_is(code: Code | None, name: str) -> bool:
    return code is not None and code in CONCEPTS[name]
