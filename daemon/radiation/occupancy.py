"""Which areas hold an injected patient. Radiation thresholds and uptake timers depend on it.

Set by features (an administration occupies its room) and by people (``occupancy``
command: the patient has left). Every change is a journal event, so occupancy
survives a restart and the record shows who said a room was free.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from suitemon.daemon.alarms import iso
from suitemon.daemon.commands import CommandError

log = structlog.get_logger("suitemon.occupancy")

FACT = "occupancy"


class Occupancy:
    def __init__(self, ctx):
        self.ctx = ctx
        ctx.commands.register(
            "occupancy",
            self._command,
            required=("area", "occupied"),
            area=lambda b: b["area"],
            description="mark an area occupied by an injected patient, or free",
        )

    async def start(self) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for ev in self.ctx.recorder.journal.events_of_type("occupancy.changed"):
            latest[ev.data["area"]] = ev.data
        for area, data in latest.items():
            if area in self.ctx.cfg.areas:
                self.ctx.facts.set(FACT, area, self._fact(data))
        log.info("occupancy restored", occupied=[a for a, d in latest.items() if d["occupied"]])

    async def stop(self) -> None:
        pass

    @staticmethod
    def _fact(data: dict[str, Any]) -> dict[str, Any]:
        return {k: data.get(k) for k in ("occupied", "since", "activity_mbq", "administered_at", "source")}

    def get(self, area: str) -> dict[str, Any] | None:
        return self.ctx.facts.get(FACT, area)

    def occupied(self, area: str) -> bool:
        f = self.get(area)
        return bool(f and f["occupied"])

    def set(
        self,
        area: str,
        occupied: bool,
        *,
        actor: str = "system",
        source: str = "",
        activity_mbq: float | None = None,
        administered_at: str | None = None,
        reason: str = "",
    ) -> None:
        if area not in self.ctx.cfg.areas:
            raise CommandError(f"unknown area '{area}'")
        current = self.get(area)
        if current is not None and current["occupied"] == occupied and not occupied:
            return  # freeing a free room is not news
        data = {
            "area": area,
            "occupied": occupied,
            "since": iso(time.time()),
            "source": source,
            "activity_mbq": activity_mbq,
            "administered_at": administered_at,
            "reason": reason,
        }
        self.ctx.recorder.record("occupancy.changed", data, actor=actor)
        self.ctx.facts.set(FACT, area, self._fact(data))

    def _command(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        area, occupied = body["area"], body["occupied"]
        if not isinstance(area, str) or not isinstance(occupied, bool):
            raise CommandError("area must be a string and occupied true or false")
        activity = body.get("activity_mbq")
        if activity is not None and (not isinstance(activity, (int, float)) or activity < 0):
            raise CommandError("activity_mbq must be a non-negative number")
        self.set(
            area,
            occupied,
            actor=actor,
            source="command",
            activity_mbq=activity,
            reason=str(body.get("reason", ""))[:200],
        )
        return {"area": area, "occupied": occupied}


def factory(ctx) -> Occupancy:
    return Occupancy(ctx)
