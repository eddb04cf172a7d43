"""Dose records: one journal event per administration, and the alarms its checks raise.

A record's id is ``<device>-<job>`` (the unit's job numbers are unique over its life),
so an administration read twice (after a restart, after a failed poll) is recorded
once. Per-administration alarms latch: their cause is a finished event, so the
condition is set present then absent at once, and the alarm stays open until a
person resets it (a non-latching alarm would clear before anyone saw it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from suitemon.daemon.alarms import Condition
from suitemon.daemon.doses.checks import run_checks
from suitemon.daemon.doses.config import DispensingConfig
from suitemon.daemon.pseudonym import accession_ref, site_key
from suitemon.drivers.dispenser import iso_utc

log = structlog.get_logger("suitemon.doses")

# Event types that carry a device's ring position ("completion_seq").
CURSOR_EVENTS = ("dose.administered", "dose.baseline", "dose.records_lost", "dose.counter_reset")
RECENT_IDS = 512


def record_id(device_id: str, job: int) -> str:
    return f"{device_id}-{job}"


def dispensing_config(cfg) -> DispensingConfig:
    return getattr(cfg, "dispensing", None) or DispensingConfig()


class DoseBook:
    """Turns ring entries of one dispenser into dose records and check alarms."""

    def __init__(self, device_id: str, dev_cfg, ctx):
        self.device_id = device_id
        self.dev_cfg = dev_cfg
        self.ctx = ctx
        self.cfg = dispensing_config(ctx.cfg)
        self.key = site_key(ctx.cfg)  # the unit sends the RIS accession number: only its pseudonym goes on
        # record_id -> administered_at of the latest records: what "already recorded" means.
        self.recent: OrderedDict[str, str | None] = OrderedDict()
        self.cursor: int | None = None
        for ev in ctx.recorder.journal.events_of_type("dose."):
            if ev.type in CURSOR_EVENTS and ev.data.get("device") == device_id:
                self.cursor = ev.data.get("completion_seq", self.cursor)
                if ev.type == "dose.administered":
                    self._remember(ev.data["record_id"], ev.data.get("administered_at"))

    def _remember(self, rid: str, administered_at: str | None) -> None:
        self.recent[rid] = administered_at
        while len(self.recent) > RECENT_IDS:
            self.recent.popitem(last=False)

    # -- ring bookkeeping events -------------------------------------------------
    def baseline(self, seq: int) -> None:
        self.ctx.recorder.record(
            "dose.baseline",
            {
                "device": self.device_id,
                "completion_seq": seq,
                "reason": "first reading: earlier ring entries predate monitoring",
            },
        )
        self.cursor = seq

    def counter_reset(self, previous: int, now: int) -> None:
        log.warning(
            "dispenser completion counter went backwards: unit reset or replaced",
            device=self.device_id,
            previous=previous,
            now=now,
        )
        self.ctx.recorder.record(
            "dose.counter_reset",
            {"device": self.device_id, "completion_seq": 0, "previous": previous, "now": now},
        )
        self.cursor = 0

    def lost(self, from_seq: int, to_seq: int) -> Condition:
        n = to_seq - from_seq + 1
        log.error(
            "dispenser administrations overwritten before they were read",
            device=self.device_id,
            from_seq=from_seq,
            to_seq=to_seq,
        )
        self.ctx.metrics.inc(f"device.{self.device_id}.records_lost", n)
        ev = self.ctx.recorder.record(
            "dose.records_lost",
            {
                "device": self.device_id,
                "completion_seq": to_seq,
                "from_seq": from_seq,
                "to_seq": to_seq,
                "count": n,
            },
        )
        self.cursor = to_seq
        name = self.dev_cfg.name or self.device_id
        return Condition(
            alarm_id=f"{self.device_id}.records_lost.{to_seq}",
            type="dispenser.records_lost",
            present=True,
            priority="medium",
            kind="technical",
            source=self.device_id,
            location=self.dev_cfg.location,
            latching=True,
            message=(
                f"{name}: {n} administration record(s) (completions {from_seq}..{to_seq}) were "
                "overwritten in the unit before suitemon read them: enter them by hand"
            ),
            details={"from_seq": from_seq, "to_seq": to_seq, "event_id": ev.event_id},
        )

    # -- administrations ---------------------------------------------------------
    def administer(self, e: Mapping[str, Any]) -> list[Condition]:
        rid = record_id(self.device_id, e["job"])
        if rid in self.recent:
            if self.recent[rid] == iso_utc(e["administered_at"]):
                log.info("administration already recorded", record_id=rid)
                self.cursor = e["seq"]
                return []
            # Same job number, another administration: the unit broke the never-reuse rule. Keep
            # both records apart and say so, rather than dropping this one as a duplicate.
            rid = f"{rid}-{e['seq']}"
            e = {**e, "issues": [*e["issues"], f"job: number {e['job']} reused by the unit"]}
        act, checks, msv = run_checks(e, self.cfg)
        data = {
            "record_id": rid,
            "patient_ref": e["patient_ref"],
            "accession": accession_ref(e["accession"], self.key) if e["accession"] else None,
            "room": e["room"],
            "radiopharmaceutical": e["radiopharmaceutical"],
            "radionuclide": e["radionuclide"],
            "prescribed_mbq": e["prescribed_mbq"],
            "measured_mbq": e["measured_mbq"],
            "residual_mbq": e["residual_mbq"],
            "administered_at": iso_utc(e["administered_at"]),
            "calibration_at": iso_utc(e["measured_at"]),
            "weight_kg": e["weight_kg"],
            "operator": e["operator"],
            "device": self.device_id,
            "job": e["job"],
            # Beyond the shared contract: what the checks used and found.
            "completion_seq": e["seq"],
            "exam": e["exam"],
            "room_number": e["room_number"],
            "residual_at": iso_utc(e["residual_at"]),
            "half_life_s": act.half_life_s,
            "administered_mbq": round(act.administered_mbq, 3),
            "effective_dose_msv": round(msv, 3) if msv is not None else None,
            "checks": [c.summary() for c in checks],
            "issues": list(e["issues"]),
        }
        ev = self.ctx.recorder.record("dose.administered", data, actor=self.device_id)
        self._remember(rid, data["administered_at"])
        self.cursor = e["seq"]
        failed = [c for c in checks if c.ok is False]
        self.ctx.metrics.inc("doses.administered")
        log.info(
            "administration recorded",
            record_id=rid,
            room=e["room"],
            administered_mbq=round(act.administered_mbq, 1),
            failed=[c.name for c in failed],
        )
        return list(self._alarms(rid, data, failed, ev.event_id))

    def _alarms(self, rid: str, data: dict, failed, event_id: str) -> Iterable[Condition]:
        area = self.ctx.cfg.areas.get(data["room"] or "")
        where = area.name if area else data["room"] or f"unmapped room {data['room_number']}"
        for c in failed:
            base = dict(
                alarm_id=f"dose.{rid}.{c.name}",
                type=c.alarm_type,
                priority=c.priority,
                kind=c.kind,
                source=self.device_id,
                location=data["room"] or self.dev_cfg.location,
                latching=True,
                message=f"{where}, patient {data['patient_ref']}: {c.message}",
                details={
                    "record_id": rid,
                    "event_id": event_id,
                    "patient_ref": data["patient_ref"],
                    "accession": data["accession"],
                    "check": c.name,
                    **c.details,
                },
            )
            yield Condition(present=True, **base)
            # The cause is a finished event: the alarm latches until a person resets it.
            yield Condition(present=False, **base)


__all__ = ["CURSOR_EVENTS", "DoseBook", "dispensing_config", "record_id"]
