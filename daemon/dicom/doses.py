"""Dispensed doses (``dose.administered`` events) for reconciliation, and the ``dose-record`` command.

The dispenser feature records ``dose.administered`` (SHARED_CONTRACTS.md). Sites without an
automatic dispenser, or a dose given by hand when it is down, record the same event with
the ``dose-record`` command; the operator is the command's actor. Either way the DICOM
service learns of it from the journal (at start) and from the recorder (afterwards).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import AwareDatetime, Field, ValidationError, model_validator

from suitemon.daemon.commands import CommandError
from suitemon.daemon.dicom.checks import Dispensed, pick_dispensed
from suitemon.daemon.pseudonym import accession_ref, site_key
from suitemon.drivers.config import Id, Strict

log = structlog.get_logger("suitemon.dicom")

EVENT = "dose.administered"
KEEP_H = 72.0


def _when(v: Any) -> datetime | None:
    if v is None:
        return None
    dt = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)  # the contract says UTC


def dispensed_from(ev) -> Dispensed:
    d = ev.data
    return Dispensed(
        record_id=str(d["record_id"]),
        event_id=ev.event_id,
        patient_ref=d.get("patient_ref") or None,
        accession=d.get("accession") or None,
        room=d.get("room"),
        radionuclide=d.get("radionuclide"),
        measured_mbq=float(d["measured_mbq"]),
        residual_mbq=float(d["residual_mbq"]) if d.get("residual_mbq") is not None else None,
        administered_at=_when(d["administered_at"]),
        calibration_at=_when(d.get("calibration_at")),
        administered_mbq=float(d["administered_mbq"]) if d.get("administered_mbq") is not None else None,
        half_life_s=float(d["half_life_s"]) if d.get("half_life_s") else None,
    )


class DoseBook:
    def __init__(self, window_h: float):
        self.window_h = window_h
        self.records: list[Dispensed] = []

    def load(self, journal) -> int:
        n = 0
        for ev in journal.events_of_type(EVENT):
            if ev.type == EVENT and self.add_event(ev) is not None:
                n += 1
        return n

    def add_event(self, ev) -> Dispensed | None:
        try:
            d = dispensed_from(ev)
        except (KeyError, TypeError, ValueError) as err:
            log.error(
                "dose.administered event without usable fields; not used for reconciliation",
                event_id=ev.event_id,
                error=str(err),
            )
            return None
        horizon = datetime.now(UTC) - timedelta(hours=max(KEEP_H, 2 * self.window_h))
        if d.administered_at < horizon:
            return None
        self.records = [
            r for r in self.records if r.administered_at >= horizon and r.record_id != d.record_id
        ]
        self.records.append(d)
        return d

    def pick(self, accession: str | None, patient_ref: str | None, around: datetime) -> Dispensed | None:
        return pick_dispensed(
            self.records, accession=accession, patient_ref=patient_ref, around=around, window_h=self.window_h
        )


class ManualDose(Strict):
    """The ``dose-record`` command body: an administration recorded by hand."""

    patient_ref: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,16}$")
    accession: str | None = Field(None, min_length=1, max_length=16)
    room: Id
    radiopharmaceutical: str = Field("FDG", min_length=1, max_length=64)
    radionuclide: str = Field("F-18", min_length=1, max_length=16)
    prescribed_mbq: float = Field(gt=0, le=20000)
    measured_mbq: float = Field(gt=0, le=20000)
    residual_mbq: float | None = Field(None, ge=0, le=20000)
    administered_at: AwareDatetime
    calibration_at: AwareDatetime | None = None
    weight_kg: float | None = Field(None, gt=0, le=500)

    @model_validator(mode="after")
    def _consistent(self) -> ManualDose:
        if not self.patient_ref and not self.accession:
            raise ValueError("give patient_ref or accession (or both): the record must name its study")
        if self.residual_mbq is not None and self.residual_mbq >= self.measured_mbq:
            raise ValueError("residual_mbq must be less than measured_mbq")
        if self.administered_at > datetime.now(UTC) + timedelta(minutes=5):
            raise ValueError("administered_at is in the future")
        return self


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def register_dose_record(ctx) -> None:
    def handler(actor: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            m = ManualDose.model_validate(body)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CommandError(
                f"{where + ': ' if where else ''}{first['msg'].removeprefix('Value error, ')}"
            ) from None
        if m.room not in ctx.cfg.areas:
            raise CommandError(f"unknown area '{m.room}'")
        # The RIS number comes in; only its pseudonym is journaled and published (as the receiver does).
        accession = accession_ref(m.accession, site_key(ctx.cfg)) if m.accession else None
        job = int(time.time() * 1000)  # unique per site in practice; the contract wants a number
        data = {
            "record_id": f"manual-{job}",
            "patient_ref": m.patient_ref,
            "accession": accession,
            "room": m.room,
            "radiopharmaceutical": m.radiopharmaceutical,
            "radionuclide": m.radionuclide,
            "prescribed_mbq": m.prescribed_mbq,
            "measured_mbq": m.measured_mbq,
            "residual_mbq": m.residual_mbq,
            "administered_at": _iso(m.administered_at),
            "calibration_at": _iso(m.calibration_at),
            "weight_kg": m.weight_kg,
            "operator": actor,
            "device": "manual",
            "job": job,
        }
        ev = ctx.recorder.record(EVENT, data, actor=actor)
        return {"record_id": data["record_id"], "event_id": ev.event_id}

    ctx.commands.register(
        "dose-record",
        handler,
        area=lambda b: b["room"],
        required=("room", "measured_mbq", "prescribed_mbq", "administered_at"),
        description="record a radiopharmaceutical administration by hand (no dispenser)",
    )
