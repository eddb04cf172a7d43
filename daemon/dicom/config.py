"""The ``[dicom]`` config section: the scanner receiver, its spool, and the dose checks."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from suitemon.daemon.dicom.classes import DEFAULT_TRANSFER_SYNTAXES
from suitemon.drivers.config import Id, Strict

_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII without backslash


def _ae(v: str) -> str:
    if not _AE.match(v) or not v.strip():
        raise ValueError("an AE title is 1-16 printable characters, no backslash, not all spaces")
    return v.strip()


class Peer(Strict):
    """A scanner (or workstation) allowed to send: its calling AE title and, optionally, where from."""

    ae_title: str
    address: str | None = Field(None, description="IP address or network (CIDR); None: any address")

    _v_ae = field_validator("ae_title")(_ae)

    @field_validator("address")
    @classmethod
    def _net(cls, v: str | None) -> str | None:
        if v is not None:
            ipaddress.ip_network(v, strict=False)  # raises ValueError with a clear message
        return v

    def matches(self, ae_title: str, address: str) -> bool:
        if ae_title.strip() != self.ae_title:
            return False
        if self.address is None:
            return True
        try:
            return ipaddress.ip_address(address) in ipaddress.ip_network(self.address, strict=False)
        except ValueError:
            return False


class Levels(Strict):
    ctdivol_mgy: float | None = Field(None, gt=0)
    dlp_mgycm: float | None = Field(None, gt=0)


class LocalLevel(Levels):
    protocol: str = Field(min_length=1, description="protocol name; * and ? are wildcards; case is ignored")


class ReferenceLevels(Strict):
    """Local diagnostic reference levels per protocol; the national level where none matches."""

    local: list[LocalLevel] = Field(default_factory=list)
    # CT part of a half-body PET-CT (domain.md section 6, Iball et al. 2017)
    national: Levels = Levels(ctdivol_mgy=4.3, dlp_mgycm=400.0)


class DicomConfig(Strict):
    ae_title: str = "SUITEMON"
    bind: str = Field("127.0.0.1", description="address to listen on; loopback unless the scanner is remote")
    port: int = Field(11112, ge=1, le=65535)
    allow: list[Peer] = Field(min_length=1, description="calling AE titles (and addresses) allowed to send")
    max_associations: int = Field(
        4, ge=1, le=64, description="simultaneous associations that asked (A-ASSOCIATE-RQ)"
    )
    # Idle connections must not lock the scanner out (issue 15 item 6, docs/dicom.md).
    request_timeout_s: float = Field(
        5, gt=0, le=60, description="time a new connection has to send its A-ASSOCIATE-RQ"
    )
    max_pending_per_address: int = Field(
        2, ge=1, le=64, description="connections from one address waiting to ask"
    )
    max_pending: int = Field(
        8, ge=1, le=256, description="connections waiting to ask, all addresses together"
    )
    max_pdu_bytes: int = Field(262144, ge=4096, le=16 * 1024 * 1024)
    acse_timeout_s: float = Field(30, gt=0, le=600)
    dimse_timeout_s: float = Field(30, gt=0, le=600)
    network_timeout_s: float = Field(60, gt=0, le=3600)
    transfer_syntaxes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TRANSFER_SYNTAXES), min_length=1
    )

    spool_dir: Path | None = Field(None, description="default: <state.dir>/dicom-spool")
    fsync: Literal["all", "reports", "none"] = Field(
        "all", description="which instances are flushed to disk before success is answered"
    )
    min_free_mb: float = Field(512, ge=0, description="refuse instances (0xA700) below this much free space")
    keep_processed_s: float = Field(0, ge=0, description="keep processed spool files this long (0: delete)")

    study_idle_s: float = Field(
        30, gt=0, le=3600, description="quiet time after release before a study is complete"
    )
    location: Id | None = Field(None, description="area id of the scanner, for alarm locations")
    pseudonym_key_file: Path | None = Field(None, description="default: <state.dir>/dicom-pseudonym.key")

    activity_tolerance_pct: float = Field(5.0, gt=0, le=100)
    start_time_tolerance_min: float = Field(5.0, gt=0, le=24 * 60)
    dispense_window_h: float = Field(
        12.0, gt=0, le=72, description="how far back to look for the dispensed dose"
    )
    reference_levels: ReferenceLevels = ReferenceLevels()

    sim: dict[str, Any] = Field(default_factory=dict, description="options for the scanner simulator")

    _v_ae = field_validator("ae_title")(_ae)

    @field_validator("transfer_syntaxes")
    @classmethod
    def _uids(cls, v: list[str]) -> list[str]:
        for uid in v:
            if not re.match(r"^[0-9]+(\.[0-9]+)*$", uid) or len(uid) > 64:
                raise ValueError(f"not a UID: {uid!r}")
        return v

    @field_validator("bind")
    @classmethod
    def _bind_is_an_address(cls, v: str) -> str:
        ipaddress.ip_address(v)  # an address, not a name: what the socket binds is what was reviewed
        return v

    def allowed(self, ae_title: str, address: str) -> bool:
        return any(p.matches(ae_title, address) for p in self.allow)


def check(cfg) -> list[tuple[str, str]]:
    """Cross-references the section's schema cannot see."""
    d = getattr(cfg, "dicom", None)
    if d is None:
        return []
    issues = []
    if d.location is not None and d.location not in cfg.areas:
        issues.append(("dicom.location", f"unknown area '{d.location}'"))
    return issues
