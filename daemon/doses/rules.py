"""Dispenser rules: unit error bits -> alarms; new ring entries -> dose records and check alarms.

The driver reads ring entries from its cursor; this module tells it where to start
(the journal's last ring position for the device, see ``bind``) and moves the cursor
only after an administration is recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import structlog

from suitemon.daemon.alarms import parse_iso
from suitemon.daemon.doses.records import DoseBook
from suitemon.daemon.pseudonym import accession_ref
from suitemon.daemon.rules import Condition, Output, Rules
from suitemon.drivers.base import Reading
from suitemon.drivers.halflife import UnknownRadionuclide, decay, half_life_s

log = structlog.get_logger("suitemon.rules.dispenser")


@dataclass(frozen=True)
class ErrorAlarm:
    priority: str
    kind: str
    latching: bool
    text: str


# Unit error bit -> alarm. Spill latches: the bit clears when the unit is reset, but the
# contamination is only gone once someone has monitored and cleaned up, so a person resets it.
ERROR_ALARMS: dict[str, ErrorAlarm] = {
    "spill": ErrorAlarm(
        "high",
        "technical",
        True,
        "spill detected: stop, contain, monitor and decontaminate; reset after clearance",
    ),
    "air_in_line": ErrorAlarm("medium", "technical", False, "air in the line: administration halted"),
    "door_open": ErrorAlarm("medium", "technical", False, "shielding door open"),
    "vial_low": ErrorAlarm("low", "technical", False, "vial low: order or change the vial"),
    "calibration_due": ErrorAlarm("low", "maintenance", False, "activity calibration due"),
    "residual_high": ErrorAlarm(
        "low", "technical", False, "residual above the unit's limit: resume or discard at the unit"
    ),
}


class DispenserRules(Rules):
    def __init__(self, device_id, cfg, ctx):
        super().__init__(device_id, cfg, ctx)
        self.book = DoseBook(device_id, cfg, ctx)
        self.key = self.book.key
        self.driver: Any = None

    def bind(self, driver) -> None:
        """Start the driver's ring cursor at the journal's last position for this unit."""
        self.driver = driver
        driver.cursor = self.book.cursor

    def _sync_cursor(self) -> None:
        if self.driver is not None:
            self.driver.cursor = self.book.cursor

    # -- readings ----------------------------------------------------------------
    def on_reading(self, reading: Reading) -> Output:
        out: list[Condition] = list(self._unit_conditions(reading.values))
        meta = reading.meta
        try:
            if "baseline" in meta:
                self.book.baseline(meta["baseline"])
            if "counter_reset" in meta:
                self.book.counter_reset(**meta["counter_reset"])
            if "lost" in meta:
                out.append(self.book.lost(**meta["lost"]))
            for entry in meta.get("entries", ()):
                out.extend(self.book.administer(entry))
        finally:
            self._sync_cursor()
        return out

    def _unit_conditions(self, v) -> Output:
        name = self.cfg.name or self.device_id
        errors = v["errors"]
        for bit, spec in ERROR_ALARMS.items():
            yield Condition(
                alarm_id=f"{self.device_id}.{bit}",
                type=f"dispenser.{bit}",
                present=bool(errors.get(bit)),
                priority=spec.priority,
                kind=spec.kind,
                latching=spec.latching,
                source=self.device_id,
                location=self.cfg.location,
                message=f"{name}: {spec.text}",
                details={"unit_state": v["unit_state"], "errors_raw": errors.get("raw")},
            )
        known = any(errors.get(b) for b in ERROR_ALARMS)
        unexplained = (v["unit_state"] == "error" and not known) or v["unit_state"].startswith("unknown")
        yield Condition(
            alarm_id=f"{self.device_id}.unit_error",
            type="dispenser.unit_error",
            present=unexplained,
            priority="medium",
            kind="technical",
            source=self.device_id,
            location=self.cfg.location,
            message=f"{name}: unit in error state '{v['unit_state']}' without a known cause bit",
            details={"unit_state": v["unit_state"], "errors_raw": errors.get("raw")},
        )

    # -- state -------------------------------------------------------------------
    def state(self, reading: Reading | None) -> dict[str, Any]:
        out: dict[str, Any] = {"ring_cursor": self.book.cursor}
        if reading is None:
            return out
        v = reading.values
        job = v.get("job")
        if isinstance(job, dict) and job.get("accession"):
            # The booking on the unit names its RIS accession number: publish the pseudonym instead.
            out["values"] = {**v, "job": {**job, "accession": accession_ref(job["accession"], self.key)}}
        if (
            v.get("vial_radionuclide")
            and v.get("vial_calibrated_at")
            and v.get("vial_activity_mbq") is not None
        ):
            try:
                t_half = half_life_s(v["vial_radionuclide"], v.get("vial_half_life_s"))
            except UnknownRadionuclide:
                return out
            out["vial_activity_now_mbq"] = round(
                decay(v["vial_activity_mbq"], parse_iso(v["vial_calibrated_at"]), time.time(), t_half), 1
            )
        return out

    def comm_lost(self, present: bool, default: Condition) -> Output:
        if not present:
            return (default,)
        slots = getattr(getattr(self.driver, "ring", None), "slots", "?")
        msg = (
            f"{default.message}. Administrations wait in the unit's ring ({slots} slots) and are read "
            f"when it answers again; more than {slots} meanwhile are lost"
        )
        return (replace(default, message=msg),)
