"""The SOP classes and transfer syntaxes the receiver accepts (domain.md section 7)."""

from __future__ import annotations

# uid -> (name, family): family says what the parser does with an instance of the class.
STORAGE_CLASSES: dict[str, tuple[str, str]] = {
    "1.2.840.10008.5.1.4.1.1.2": ("CT Image Storage", "ct_image"),
    "1.2.840.10008.5.1.4.1.1.2.1": ("Enhanced CT Image Storage", "ct_image"),
    "1.2.840.10008.5.1.4.1.1.128": ("PET Image Storage", "pet_image"),
    "1.2.840.10008.5.1.4.1.1.130": ("Enhanced PET Image Storage", "pet_image"),
    "1.2.840.10008.5.1.4.1.1.88.67": ("X-Ray Radiation Dose SR Storage", "sr"),
    "1.2.840.10008.5.1.4.1.1.88.22": ("Enhanced SR Storage", "sr"),
    "1.2.840.10008.5.1.4.1.1.88.33": ("Comprehensive SR Storage", "sr"),
    # Not in pynetdicom's StoragePresentationContexts: listed here explicitly (pitfalls.md).
    "1.2.840.10008.5.1.4.1.1.88.68": ("Radiopharmaceutical Radiation Dose SR Storage", "sr"),
    "1.2.840.10008.5.1.4.1.1.7": ("Secondary Capture Image Storage", "image"),
}

VERIFICATION = "1.2.840.10008.1.1"

# Images are stored, never decoded, so compressed syntaxes cost nothing to accept.
DEFAULT_TRANSFER_SYNTAXES: list[str] = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old consoles)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (secondary captures)
    "1.2.840.10008.1.2.5",  # RLE Lossless
]

SR_FAMILY = "sr"


def is_sr(sop_class: str) -> bool:
    entry = STORAGE_CLASSES.get(sop_class)
    return entry is not None and entry[1] == SR_FAMILY


def name(sop_class: str) -> str:
    entry = STORAGE_CLASSES.get(sop_class)
    return entry[0] if entry else sop_class
