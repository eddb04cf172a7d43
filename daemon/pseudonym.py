"""Pseudonymous patient references: what MQTT carries instead of a name or a hospital number.

``patient_ref = "p" + first 15 hex digits of HMAC-SHA256(site key, PatientID)`` (16 characters,
the length the dose-administration contract allows). The key
is a site secret kept on the suite PC (``dicom.pseudonym_key_file``, created with 32
random bytes on first start), so the same patient gets the same reference across
studies and features (the dispenser can use this function), while the reference alone
cannot be turned back into the hospital number, nor guessed by hashing candidate
numbers without the key. ``suitemon patient-ref`` prints a reference for a given ID.

Accession numbers identify a person's examination in the RIS as well as a hospital number
identifies the person, so they get the same treatment (issue 15 item 7):
``accession_ref = "a" + first 15 hex digits of HMAC-SHA256(site key, "accession\0" + number)``.
The prefix in the HMAC input keeps a number that is both a PatientID and an accession from
getting related references. Everything suitemon journals and publishes (``accession`` fields,
alarm texts) carries the reference; ``suitemon accession-ref`` prints it for a number.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from suitemon.daemon.config import SuiteConfig
from suitemon.daemon.secret_files import write_new_secret

KEY_BYTES = 32


def patient_ref(patient_id: str, key: bytes) -> str:
    pid = patient_id.strip()
    return "p" + hmac.new(key, pid.encode("utf-8"), hashlib.sha256).hexdigest()[:15]


def accession_ref(accession: str, key: bytes) -> str:
    acc = accession.strip()
    return "a" + hmac.new(key, b"accession\0" + acc.encode("utf-8"), hashlib.sha256).hexdigest()[:15]


def key_file(cfg: SuiteConfig) -> Path:
    """The site key's file: ``dicom.pseudonym_key_file`` or ``<state.dir>/dicom-pseudonym.key``."""
    dicom = getattr(cfg, "dicom", None)
    configured = getattr(dicom, "pseudonym_key_file", None) if dicom is not None else None
    return configured or Path(cfg.state.dir) / "dicom-pseudonym.key"


def site_key(cfg: SuiteConfig) -> bytes:
    """The key every feature pseudonymises with (DICOM receiver, dispenser, dose-record)."""
    return load_or_create_key(key_file(cfg))


def load_or_create_key(path: Path) -> bytes:
    """The site key; created (mode 0600) if it does not exist yet. Refuses a short key."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(KEY_BYTES)
        write_new_secret(path, key)
        return key
    if len(key) < 16:
        raise ValueError(f"{path}: pseudonym key is {len(key)} bytes; at least 16 are needed")
    return key
