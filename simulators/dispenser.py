"""Simulated dose-dispensing unit implementing the suitemon reference interface.

A job (patient reference, room, weight, prescribed activity, exam) runs through the unit
states idle -> drawing up -> ready -> injecting -> complete -> idle. The vial decays in real
time; the unit draws the prescribed activity decay-corrected to the planned injection time,
with a realistic dispensing error (a few per cent, configurable), and a small residual.
Each completion is written to the ring slot first and counted second, as the interface
requires. ``sim.time_scale`` compresses the phase durations (not the clocks) for demos.

Options (device ``sim`` table): time_scale, error_pct (1-sigma), max_error_pct, residual_pct,
draw_s, ready_s, inject_s, complete_hold_s, vial_low_mbq, seed, first_job, and
vial = {radionuclide, radiopharmaceutical, activity_mbq}.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from suitemon.drivers.dispenser import INTERFACE_VERSION, codes_of, ring_of
from suitemon.drivers.halflife import decay, half_life_s
from suitemon.drivers.profile import encode
from suitemon.simulators.base import ModbusSimulator, SimError

ERROR_BITS = ("spill", "air_in_line", "door_open", "vial_low", "calibration_due", "residual_high")
HALTING = ("spill", "air_in_line")  # these stop the unit (state error, job aborted)


@dataclass
class Job:
    number: int
    patient_ref: str
    room: int
    prescribed_mbq: float
    weight_kg: float | None = None
    accession: str = ""
    exam: str = ""
    operator: str = ""
    error_pct: float | None = None  # forced dispensing error for this job
    residual_mbq: float | None = None  # forced residual
    task: asyncio.Task | None = field(default=None, repr=False)


class DispenserSimulator(ModbusSimulator):
    default_profile = "dispenser_reference"

    def __init__(self, device_id, cfg):
        super().__init__(device_id, cfg)
        assert self.profile is not None
        self.ring = ring_of(self.profile)
        self.codes = codes_of(self.profile)
        self._code = {
            name: {v: k for k, v in getattr(self.codes, name).items()}
            for name in ("unit_state", "radionuclide", "radiopharmaceutical")
        }
        span = max(p.end for p in self.ring.entry.points)
        for slot in range(self.ring.slots):
            self.store.define("holding", self.ring.base + slot * self.ring.stride, span)
        o = self.options
        self.scale = float(o.get("time_scale", 1.0))
        if not self.scale > 0:
            raise SimError(f"{device_id}: sim.time_scale must be positive")
        self.error_pct = float(o.get("error_pct", 1.5))
        self.max_error_pct = float(o.get("max_error_pct", 4.0))
        self.residual_pct = float(o.get("residual_pct", 1.0))
        self.durations = {
            k: float(o.get(k, d))
            for k, d in (("draw_s", 60.0), ("ready_s", 20.0), ("inject_s", 30.0), ("complete_hold_s", 10.0))
        }
        self.vial_low_mbq = float(o.get("vial_low_mbq", 500.0))
        self.rng = random.Random(o.get("seed"))
        self.next_job = int(o.get("first_job", 1001))
        self.completed = 0
        self.forced: set[str] = set()
        self.state = "idle"
        self.job: Job | None = None
        self.next_error_pct: float | None = None
        self.next_residual_mbq: float | None = None
        self.records: list[dict[str, Any]] = []
        v = o.get("vial", {})
        self.load_vial(
            v.get("radionuclide", "F-18"),
            v.get("radiopharmaceutical", "FDG"),
            float(v.get("activity_mbq", 20000.0)),
        )
        self.set_point(interface_version=INTERFACE_VERSION, ring_slots=self.ring.slots, jobs_completed=0)
        self._publish()
        self.actions.update(
            {
                "job": self.start_job,
                "inject": self.inject,
                "administer": self.administer,
                "burst": self.burst,
                "over_tolerance": self.over_tolerance,
                "next_residual": self.set_next_residual,
                "error": self.set_errors,
                "clear_error": self.clear_errors,
                "load_vial": self.load_vial,
                "vial": self.vial_now,
                "records": lambda: list(self.records),
                "state": lambda: self.state,
                "replace_unit": self.replace_unit,
            }
        )

    # -- vial -------------------------------------------------------------------------
    def load_vial(
        self,
        radionuclide: str = "F-18",
        radiopharmaceutical: str = "FDG",
        activity_mbq: float = 20000.0,
        half_life: float | None = None,
    ) -> dict[str, Any]:
        if radionuclide not in self._code["radionuclide"]:
            raise SimError(f"unknown radionuclide {radionuclide!r}")
        if radiopharmaceutical not in self._code["radiopharmaceutical"]:
            raise SimError(f"unknown radiopharmaceutical {radiopharmaceutical!r}")
        self.nuclide, self.pharma = radionuclide, radiopharmaceutical
        self.t_half = half_life_s(radionuclide, half_life)
        self.stated_half_life = half_life
        self.cal_time = int(time.time())
        self.cal_activity = float(activity_mbq)
        self._publish()
        return self.vial_now()

    def activity_at(self, t: float) -> float:
        return decay(self.cal_activity, self.cal_time, t, self.t_half)

    def vial_now(self) -> dict[str, Any]:
        return {
            "radionuclide": self.nuclide,
            "radiopharmaceutical": self.pharma,
            "activity_mbq": round(self.activity_at(time.time()), 3),
        }

    # -- jobs -------------------------------------------------------------------------
    def _new_job(
        self,
        patient_ref: str,
        room: int,
        prescribed_mbq: float,
        weight_kg: float | None,
        accession: str,
        exam: str,
        operator: str,
    ) -> Job:
        if self.state not in ("idle", "complete"):
            raise SimError(f"{self.device_id}: busy ({self.state}); wait for the job to finish")
        job = Job(
            self.next_job,
            str(patient_ref),
            int(room),
            float(prescribed_mbq),
            float(weight_kg) if weight_kg else None,
            str(accession),
            str(exam),
            str(operator),
            self.next_error_pct,
            self.next_residual_mbq,
        )
        self.next_job += 1
        self.next_error_pct = self.next_residual_mbq = None
        return job

    def start_job(
        self,
        patient_ref: str,
        room: int,
        prescribed_mbq: float,
        weight_kg: float | None = None,
        accession: str = "",
        exam: str = "",
        operator: str = "",
        auto: bool = True,
    ) -> dict[str, Any]:
        """Take a job; with auto the unit draws up, injects and completes on its own."""
        job = self._new_job(patient_ref, room, prescribed_mbq, weight_kg, accession, exam, operator)
        self.job = job
        self._set_state("drawing_up")
        job.task = asyncio.get_running_loop().create_task(self._run(job, auto), name=f"sim-job-{job.number}")
        return {"job": job.number}

    def inject(self) -> dict[str, Any]:
        if self.job is None or self.state != "ready":
            raise SimError(f"{self.device_id}: nothing ready to inject ({self.state})")
        self.job.task = asyncio.get_running_loop().create_task(self._inject(self.job), name="sim-inject")
        return {"job": self.job.number}

    async def _sleep(self, name: str) -> None:
        await asyncio.sleep(self.durations[name] / self.scale)

    async def _run(self, job: Job, auto: bool) -> None:
        await self._sleep("draw_s")
        self.measured_at = time.time()
        self._set_state("ready")
        if auto:
            await self._sleep("ready_s")
            await self._inject(job)

    async def _inject(self, job: Job) -> None:
        administered_at = time.time()
        self._set_state("injecting")
        await self._sleep("inject_s")
        self._complete(job, self.measured_at, administered_at, time.time())
        await self._sleep("complete_hold_s")
        if self.state == "complete":
            self.job = None
            self._set_state("idle")

    def administer(
        self,
        patient_ref: str,
        room: int,
        prescribed_mbq: float,
        weight_kg: float | None = None,
        accession: str = "",
        exam: str = "",
        operator: str = "",
        ago_s: float = 30.0,
    ) -> dict[str, Any]:
        """A whole job at once (drawn a minute before an injection ``ago_s`` ago): for completions in
        quick succession and for tests that need a known administration time."""
        job = self._new_job(patient_ref, room, prescribed_mbq, weight_kg, accession, exam, operator)
        now = time.time()
        administered_at = now - float(ago_s)
        return self._complete(job, administered_at - 60, administered_at, now)

    def burst(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several whole jobs in one step: no Modbus request can see the unit between them."""
        return [self.administer(**j) for j in jobs]

    def over_tolerance(self, pct: float = 15.0) -> dict[str, Any]:
        """Force the next dispense to be off by pct per cent (negative: under-dose)."""
        self.next_error_pct = float(pct)
        return {"next_error_pct": self.next_error_pct}

    def set_next_residual(self, mbq: float) -> dict[str, Any]:
        self.next_residual_mbq = float(mbq)
        return {"next_residual_mbq": self.next_residual_mbq}

    def _complete(
        self, job: Job, measured_at: float, administered_at: float, residual_at: float
    ) -> dict[str, Any]:
        measured_at, administered_at, residual_at = int(measured_at), int(administered_at), int(residual_at)
        if job.error_pct is not None:
            err = job.error_pct / 100
        else:
            err = max(-self.max_error_pct, min(self.max_error_pct, self.rng.gauss(0.0, self.error_pct))) / 100
        # Drawn so that it decays to the prescription at the injection, give or take the error.
        measured = decay(job.prescribed_mbq, administered_at, measured_at, self.t_half) * (1 + err)
        available = self.activity_at(measured_at)
        if measured > available:
            self.forced.add("vial_low")
            self.job = None
            self._set_state("error")
            raise SimError(f"{self.device_id}: vial holds {available:.0f} MBq, job needs {measured:.0f} MBq")
        if job.residual_mbq is not None:
            residual = job.residual_mbq
        else:
            frac = self.rng.uniform(0.3, 1.0) * self.residual_pct / 100 if self.residual_pct > 0 else 0.0
            residual = decay(measured, measured_at, residual_at, self.t_half) * frac
        # The vial gives up what was drawn: recalibrate it at the draw.
        self.cal_activity, self.cal_time = available - measured, measured_at
        self.completed += 1
        seq = self.completed
        entry = {
            "seq": seq,
            "job": job.number,
            "patient_ref": job.patient_ref,
            "accession": job.accession,
            "exam": job.exam,
            "operator": job.operator,
            "room": job.room,
            "weight_kg": job.weight_kg or 0,
            "radionuclide": self._code["radionuclide"][self.nuclide],
            "radiopharmaceutical": self._code["radiopharmaceutical"][self.pharma],
            "prescribed_mbq": job.prescribed_mbq,
            "measured_mbq": round(measured, 3),
            "measured_at": measured_at,
            "administered_at": administered_at,
            "residual_mbq": round(residual, 3),
            "residual_at": residual_at,
            "half_life_s": self.stated_half_life or 0,
        }
        self._write_slot(seq, entry)  # slot first ...
        self.set_point(
            jobs_completed=seq,
            last_job=job.number,
            last_measured_mbq=entry["measured_mbq"],
            last_administered_at=administered_at,
            last_residual_mbq=entry["residual_mbq"],
        )  # ... then count
        self.job = job
        self._set_state("complete")
        self._publish()
        record = dict(
            entry, radionuclide=self.nuclide, radiopharmaceutical=self.pharma, error_pct=round(err * 100, 3)
        )
        self.records.append(record)
        return record

    def _write_slot(self, seq: int, entry: dict[str, Any]) -> None:
        base = self.ring.slot_address(seq)
        for p in self.ring.entry.points:
            self.store.poke("holding", base + p.address, encode(p, entry[p.name]))

    def replace_unit(self, first_job: int = 1001) -> dict[str, Any]:
        """A new (or factory-reset) unit on the same line: counter and ring empty, job numbers restart."""
        self.completed, self.next_job, self.job = 0, int(first_job), None
        span = max(p.end for p in self.ring.entry.points)
        for slot in range(self.ring.slots):
            self.store.poke("holding", self.ring.base + slot * self.ring.stride, [0] * span)
        self.set_point(
            jobs_completed=0, last_job=0, last_measured_mbq=0, last_administered_at=0, last_residual_mbq=0
        )
        self._set_state("idle")
        return {"jobs_completed": 0, "next_job": self.next_job}

    # -- errors -------------------------------------------------------------------------
    def set_errors(self, **bits: bool) -> dict[str, Any]:
        for name, on in bits.items():
            if name not in ERROR_BITS:
                raise SimError(
                    f"{self.device_id}: unknown error bit '{name}'; known: {', '.join(ERROR_BITS)}"
                )
            (self.forced.add if on else self.forced.discard)(name)
        if any(b in self.forced for b in HALTING):
            if self.job is not None and self.job.task is not None:
                self.job.task.cancel()
            self.job = None
            self._set_state("error")
        self._publish()
        return {"errors": sorted(self.forced), "state": self.state}

    def clear_errors(self, names: list[str] | None = None) -> dict[str, Any]:
        for n in names or tuple(self.forced):
            self.forced.discard(n)
        if self.state == "error" and not any(b in self.forced for b in HALTING):
            self._set_state("idle")
        self._publish()
        return {"errors": sorted(self.forced), "state": self.state}

    # -- registers ----------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        self._publish()

    def update(self) -> None:
        self._publish()

    def _publish(self) -> None:
        if not hasattr(self, "nuclide"):
            return
        bits = set(self.forced)
        if self.activity_at(time.time()) < self.vial_low_mbq:
            bits.add("vial_low")
        job = self.job if self.state in ("drawing_up", "ready", "injecting") else None
        self.set_point(
            unit_state=self._code["unit_state"][self.state],
            errors={b: b in bits for b in ERROR_BITS},
            vial_radionuclide=self._code["radionuclide"][self.nuclide],
            vial_radiopharmaceutical=self._code["radiopharmaceutical"][self.pharma],
            vial_activity_mbq=round(self.cal_activity, 3),
            vial_calibration_time=self.cal_time,
            vial_half_life_s=self.stated_half_life or 0,
            job_number=job.number if job else 0,
            job_patient_ref=job.patient_ref if job else "",
            job_accession=job.accession if job else "",
            job_exam=job.exam if job else "",
            job_operator=job.operator if job else "",
            job_room=job.room if job else 0,
            job_weight_kg=(job.weight_kg or 0) if job else 0,
            job_prescribed_mbq=job.prescribed_mbq if job else 0,
        )

    async def stop(self) -> None:
        if self.job is not None and self.job.task is not None:
            self.job.task.cancel()
