"""Uptake timers: an administration starts its room's clock; the scanner team hears when it is time.

On every durable ``dose.administered`` event with a room: the room becomes occupied (core
occupancy service, with the activity and time), ``uptake.started`` is journaled and two
wall-clock deadlines are armed from the administration time on the unit: *ready for scan*
(``uptake.ready``, sent to the scanner team's role) and *overdue* (an alarm while the
patient waits too long). The clock ends when the room is freed: the ``occupancy`` command,
or a study-complete event for that patient. A new administration in a room still timing
ends the previous clock first (the earlier patient must have left unrecorded).

Everything is rebuilt from the journal at start, so a restart neither forgets a waiting
patient nor announces a ready room twice; deadlines missed while down fire at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog

from suitemon.daemon.alarms import Condition, iso, parse_iso
from suitemon.daemon.doses.config import UptakeConfig
from suitemon.daemon.doses.records import dispensing_config
from suitemon.daemon.journal import Event
from suitemon.daemon.tasks import TaskSet

log = structlog.get_logger("suitemon.uptake")


@dataclass
class Clock:
    room: str
    record_id: str
    patient_ref: str | None
    accession: str | None
    administered_at: float
    ready_at: float
    overdue_at: float
    activity_mbq: float | None
    started_at: float
    ready: bool = False
    overdue: bool = False

    def public(self, now: float) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "patient_ref": self.patient_ref,
            "accession": self.accession,
            "administered_at": iso(self.administered_at),
            "ready_at": iso(self.ready_at),
            "overdue_at": iso(self.overdue_at),
            "activity_mbq": self.activity_mbq,
            "remaining_s": round(max(0.0, self.ready_at - now), 1),
            "waited_s": round(max(0.0, now - self.administered_at), 1),
        }


class UptakeService:
    def __init__(self, ctx):
        self.ctx = ctx
        self.cfg: UptakeConfig = getattr(ctx.cfg, "uptake", None) or UptakeConfig()
        self.exams = dispensing_config(ctx.cfg).exams
        self.enabled = getattr(ctx.cfg, "uptake", None) is not None or any(
            d.kind == "dispenser" and d.enabled for d in ctx.cfg.devices.values()
        )
        self.clocks: dict[str, Clock] = {}
        self._timers: dict[str, list[asyncio.TimerHandle]] = {}
        self.tasks = TaskSet()
        self._started = False
        if self.enabled:
            ctx.recorder.subscribe(self._on_event)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        if not self.enabled:
            return
        self._restore()
        self.ctx.facts.watch("occupancy", self._on_occupancy)
        self._started = True
        for clock in list(self.clocks.values()):
            self._arm(clock)
        self.tasks.spawn(self._publisher(), name="uptake-state")
        log.info("uptake timers running", rooms=sorted(self.clocks))

    async def stop(self) -> None:
        for room in list(self._timers):
            self._disarm(room)
        await self.tasks.cancel_all(timeout=1.0)

    # -- restore -------------------------------------------------------------------
    def _restore(self) -> None:
        journal = self.ctx.recorder.journal
        started: set[str] = set()
        for ev in journal.events_of_type("uptake."):
            d = ev.data
            if ev.type == "uptake.started":
                started.add(d["record_id"])
                self.clocks[d["room"]] = self._clock_from(d, parse_iso(ev.ts))
            elif ev.type in ("uptake.ready", "uptake.ended"):
                clock = self.clocks.get(d["room"])
                if clock is None or clock.record_id != d["record_id"]:
                    continue
                if ev.type == "uptake.ready":
                    clock.ready = True
                else:
                    del self.clocks[d["room"]]
        # An administration journaled just before a crash may lack its uptake.started.
        last: dict[str, Event] = {}
        for ev in journal.events_of_type("dose.administered"):
            if ev.data.get("room"):
                last[ev.data["room"]] = ev
        for ev in last.values():
            if ev.data["record_id"] not in started:
                log.warning(
                    "administration without an uptake clock: starting it now", record_id=ev.data["record_id"]
                )
                self._begin(ev)
        for rec in list(self.ctx.engine.alarms.values()):
            if rec.type != "uptake.overdue":
                continue
            clock = self.clocks.get(rec.location or "")
            if clock is not None and clock.record_id == rec.details.get("record_id"):
                clock.overdue = True
            else:  # its clock ended but the alarm's end was not journaled: end it now
                self.ctx.engine.apply(Condition(alarm_id=rec.alarm_id, type=rec.type, present=False))
        occ = self.ctx.services.get("occupancy")
        for room, clock in list(self.clocks.items()):
            fact = occ.get(room) if occ is not None else None
            if fact is not None and not fact["occupied"] and parse_iso(fact["since"]) >= clock.started_at:
                self._end(room, "room freed while suitemon was not running", fact.get("source") or "")

    def _clock_from(self, d: dict[str, Any], started_at: float) -> Clock:
        return Clock(
            room=d["room"],
            record_id=d["record_id"],
            patient_ref=d.get("patient_ref"),
            accession=d.get("accession"),
            administered_at=parse_iso(d["administered_at"]),
            ready_at=parse_iso(d["ready_at"]),
            overdue_at=parse_iso(d["overdue_at"]),
            activity_mbq=d.get("activity_mbq"),
            started_at=started_at,
        )

    # -- events in -----------------------------------------------------------------
    def _on_event(self, ev: Event) -> None:
        try:
            if ev.type == "dose.administered" and self._started:
                self._begin(ev)
            elif ev.type in self.cfg.study_complete_events and self._started:
                self._study_complete(ev)
        except Exception:  # a bad event must not take the recorder's listeners down
            log.exception("uptake could not handle an event", type=ev.type, event_id=ev.event_id)
            self.ctx.metrics.inc("uptake.event_errors")

    def _begin(self, ev: Event) -> None:
        d = ev.data
        room, rid = d.get("room"), d["record_id"]
        if not room:
            log.error("administration has no room: no uptake clock, no occupancy", record_id=rid)
            return
        current = self.clocks.get(room)
        if current is not None:
            if current.record_id == rid:
                return
            self._end(room, f"superseded by administration {rid} in the same room", "")
        t_adm = parse_iso(d["administered_at"]) if d.get("administered_at") else parse_iso(ev.ts)
        exam = self.exams.get(d.get("exam") or "")
        uptake_s = exam.uptake_s if exam is not None and exam.uptake_s else self.cfg.uptake_s
        overdue_s = uptake_s + (self.cfg.overdue_s - self.cfg.uptake_s)
        activity = d.get("administered_mbq", d.get("measured_mbq"))
        occ = self.ctx.services.get("occupancy")
        if occ is not None:
            occ.set(
                room,
                True,
                source=f"dose:{rid}",
                activity_mbq=activity,
                administered_at=d.get("administered_at"),
                reason="radiopharmaceutical administered",
            )
        else:
            log.error("no occupancy service: the room's radiation thresholds will not know it is occupied")
        data = {
            "room": room,
            "record_id": rid,
            "patient_ref": d.get("patient_ref"),
            "accession": d.get("accession"),
            "administered_at": iso(t_adm),
            "ready_at": iso(t_adm + uptake_s),
            "overdue_at": iso(t_adm + overdue_s),
            "uptake_s": uptake_s,
            "overdue_s": overdue_s,
            "activity_mbq": activity,
        }
        self.ctx.recorder.record("uptake.started", data)
        clock = self._clock_from(data, time.time())
        self.clocks[room] = clock
        log.info("uptake clock started", room=room, record_id=rid, ready_at=data["ready_at"])
        if self._started:
            self._arm(clock)
        self._publish_room(room)

    def _study_complete(self, ev: Event) -> None:
        d = ev.data
        match = None
        for room, clock in self.clocks.items():
            if d.get("room") and d["room"] != room:
                continue
            if (
                (d.get("accession") and d["accession"] == clock.accession)
                or (d.get("patient_ref") and d["patient_ref"] == clock.patient_ref)
                or (d.get("room") == room and not d.get("accession") and not d.get("patient_ref"))
            ):
                match = room
                break
        if match is None:
            log.info("study complete for no waiting patient", type=ev.type, room=d.get("room"))
            return
        occ = self.ctx.services.get("occupancy")
        if occ is not None:
            # Freeing the room ends the clock through the occupancy watch.
            occ.set(match, False, source=f"event:{ev.type}", reason="study complete")
        if match in self.clocks:
            self._end(match, "study complete", f"event:{ev.type}")

    def _on_occupancy(self, area: str, value: dict[str, Any] | None) -> None:
        if value is not None and not value.get("occupied") and area in self.clocks:
            self._end(area, "room freed", value.get("source") or "")

    # -- timers --------------------------------------------------------------------
    def _arm(self, clock: Clock) -> None:
        self._disarm(clock.room)
        loop = asyncio.get_running_loop()
        now = time.time()
        handles = []
        if not clock.ready:
            handles.append(
                loop.call_later(max(0.0, clock.ready_at - now), self._ready, clock.room, clock.record_id)
            )
        handles.append(
            loop.call_later(max(0.0, clock.overdue_at - now), self._overdue, clock.room, clock.record_id)
        )
        self._timers[clock.room] = handles

    def _disarm(self, room: str) -> None:
        for h in self._timers.pop(room, []):
            h.cancel()

    def _current(self, room: str, rid: str) -> Clock | None:
        clock = self.clocks.get(room)
        return clock if clock is not None and clock.record_id == rid else None

    def _ready(self, room: str, rid: str) -> None:
        clock = self._current(room, rid)
        if clock is None or clock.ready:
            return
        clock.ready = True
        now = time.time()
        role = self.cfg.notify_role if self.cfg.notify_role in self.ctx.cfg.roles else None
        recipients = list(self.ctx.cfg.roles[role].recipients) if role else []
        area = self.ctx.cfg.areas.get(room)
        self.ctx.recorder.record(
            "uptake.ready",
            {
                **clock.public(now),
                "room": room,
                "role": role,
                "recipients": recipients,
                "late_s": round(max(0.0, now - clock.ready_at), 1),
                "message": f"{area.name if area else room}: patient {clock.patient_ref} ready for scan "
                f"({(now - clock.administered_at) / 60:.0f} min after administration)",
            },
        )
        log.info("patient ready for scan", room=room, record_id=rid)
        self._publish_room(room)

    def _overdue(self, room: str, rid: str) -> None:
        clock = self._current(room, rid)
        if clock is None:
            return
        clock.overdue = True
        self.ctx.engine.apply(self._overdue_condition(clock, True))
        self._publish_room(room)

    def _overdue_condition(self, clock: Clock, present: bool) -> Condition:
        area = self.ctx.cfg.areas.get(clock.room)
        waited = (time.time() - clock.administered_at) / 60
        return Condition(
            alarm_id=f"uptake.{clock.room}.overdue",
            type="uptake.overdue",
            present=present,
            priority=self.cfg.overdue_priority,
            kind="clinical",
            source="uptake",
            location=clock.room,
            message=f"{area.name if area else clock.room}: patient {clock.patient_ref} has waited "
            f"{waited:.0f} min since administration (overdue after "
            f"{(clock.overdue_at - clock.administered_at) / 60:.0f} min): check on the patient and the scanner",
            details={
                "record_id": clock.record_id,
                "patient_ref": clock.patient_ref,
                "administered_at": iso(clock.administered_at),
                "overdue_at": iso(clock.overdue_at),
            },
        )

    def _end(self, room: str, reason: str, source: str) -> None:
        clock = self.clocks.pop(room, None)
        if clock is None:
            return
        self._disarm(room)
        if clock.overdue:
            self.ctx.engine.apply(self._overdue_condition(clock, False))
        now = time.time()
        self.ctx.recorder.record(
            "uptake.ended",
            {
                "room": room,
                "record_id": clock.record_id,
                "patient_ref": clock.patient_ref,
                "reason": reason,
                "source": source,
                "waited_s": round(now - clock.administered_at, 1),
                "was_ready": clock.ready,
            },
        )
        log.info("uptake clock ended", room=room, record_id=clock.record_id, reason=reason)
        self._publish_room(room)

    # -- retained state ------------------------------------------------------------
    def rooms(self) -> list[str]:
        listed = [a for a, cfg in self.ctx.cfg.areas.items() if cfg.kind == "uptake_room"]
        return listed + sorted(set(self.clocks) - set(listed))

    def room_state(self, room: str, now: float | None = None) -> dict[str, Any]:
        now = now or time.time()
        clock = self.clocks.get(room)
        state = {"room": room, "published_at": iso(now), "state": "idle"}
        if clock is not None:
            state["state"] = "overdue" if clock.overdue else "ready" if clock.ready else "waiting"
            state.update(clock.public(now))
        return state

    def _publish_room(self, room: str) -> None:
        self.ctx.publish_json(self.ctx.topics.sub("uptake", room), self.room_state(room), retain=True)

    async def _publisher(self) -> None:
        while True:
            for room in self.rooms():
                self._publish_room(room)
            await asyncio.sleep(self.cfg.state_period_s)


def factory(ctx) -> UptakeService:
    return UptakeService(ctx)
