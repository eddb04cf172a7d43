"""The weekly bell test: per-room test mode, test passes in the journal, overdue alarms.

A test mode is started by command for one room and ends by command or by itself after
``test_window_s`` (a room must never be left where a real call counts as a test). While a
room is in test mode a press is journaled as ``bells.test_pass`` instead of raising a call,
the lamps show for ``test_lamp_s`` so the tester sees them work, and a LOW technical alarm
says so on every display. A room's *last pass* is the oldest of its buttons' last passes:
a room is tested when every button it has was pressed in a test. When that is older than
``test_interval_s`` (7 days), a LOW maintenance alarm asks for the test. A room never
tested counts from the journal's first event (when monitoring began), so a new install
is not in alarm from its first second but is within a week.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from suitemon.daemon.alarms import Condition, iso, parse_iso

log = structlog.get_logger("suitemon.bells")

TEST_PASS = "bells.test_pass"
TEST_MODE = "bells.test_mode"


@dataclass
class Session:
    test_id: str
    actor: str
    until_mono: float
    until_wall: float


def last_passes(journal, device_id: str) -> dict[tuple[str, str], float]:
    """(room, button) -> wall time of its last test pass, from the journal."""
    out: dict[tuple[str, str], float] = {}
    for ev in journal.events_of_type(TEST_PASS):
        d = ev.data
        if d.get("device") == device_id:
            out[(d["room"], d["button"])] = parse_iso(ev.ts)
    return out


def monitoring_since(journal) -> float | None:
    first = journal.events_after(0, limit=1)
    return parse_iso(first[0].ts) if first else None


def room_last_pass(passes: dict[tuple[str, str], float], room: str, buttons) -> float | None:
    """The oldest of the room's buttons' last passes; None until every button has passed once."""
    times = [passes.get((room, b)) for b in buttons]
    if not times or any(t is None for t in times):
        return None
    return min(times)  # type: ignore[type-var]


class BellTests:
    def __init__(self, device_id: str, cfg: Any, ctx: Any, names: dict[str, str]):
        self.device_id = device_id
        self.cfg = cfg
        self.ctx = ctx
        self.names = names
        self.buttons = {room: list(r.inputs()) for room, r in cfg.rooms.items()}
        journal = ctx.recorder.journal
        self.passes = last_passes(journal, device_id)
        self.since = monitoring_since(journal) or time.time()
        self.sessions: dict[str, Session] = {}
        self.lamp_until: dict[str, float] = {}
        self._next_check = 0.0
        self._period = min(60.0, max(0.1, cfg.test_interval_s / 10))

    # -- test mode -----------------------------------------------------------
    def start(self, room: str, actor: str, window_s: float | None = None) -> dict[str, Any]:
        window = min(window_s or self.cfg.test_window_s, self.cfg.test_window_s)
        now_m, now_w = time.monotonic(), time.time()
        s = Session(str(uuid.uuid4()), actor, now_m + window, now_w + window)
        self.sessions[room] = s
        self._next_check = 0.0
        ev = self.ctx.recorder.record(
            TEST_MODE,
            {
                "device": self.device_id,
                "room": room,
                "on": True,
                "test_id": s.test_id,
                "until": iso(s.until_wall),
                "window_s": window,
            },
            actor=actor,
        )
        log.warning(
            "bell test mode on: presses in this room are tests, not calls",
            device=self.device_id,
            room=room,
            until=iso(s.until_wall),
            by=actor,
        )
        return {"event_id": ev.event_id, "room": room, "test_id": s.test_id, "until": iso(s.until_wall)}

    def stop(self, room: str, actor: str, reason: str) -> dict[str, Any] | None:
        s = self.sessions.pop(room, None)
        if s is None:
            return None
        self._next_check = 0.0
        ev = self.ctx.recorder.record(
            TEST_MODE,
            {"device": self.device_id, "room": room, "on": False, "test_id": s.test_id, "reason": reason},
            actor=actor,
        )
        log.info("bell test mode off", device=self.device_id, room=room, reason=reason)
        return {"event_id": ev.event_id, "room": room, "test_id": s.test_id}

    def active(self, room: str, now: float) -> bool:
        s = self.sessions.get(room)
        if s is None:
            return False
        if now >= s.until_mono:
            self.stop(room, "system", "test window elapsed")
            return False
        return True

    def passed(self, room: str, button: str) -> None:
        s = self.sessions[room]
        ev = self.ctx.recorder.record(
            TEST_PASS,
            {
                "device": self.device_id,
                "room": room,
                "button": button,
                "input": getattr(self.cfg.rooms[room], button),
                "test_id": s.test_id,
            },
            actor=s.actor,
        )
        self.passes[(room, button)] = parse_iso(ev.ts)
        self.lamp_until[room] = time.monotonic() + self.cfg.test_lamp_s
        self._next_check = 0.0  # re-evaluate the overdue alarm now
        log.info("bell test pass", device=self.device_id, room=room, button=button)

    # -- alarms -------------------------------------------------------------
    def conditions(self, now: float) -> list[Condition]:
        """Test-mode and overdue conditions, re-evaluated every few seconds (cheap on a 50 ms poll)."""
        for room in list(self.sessions):
            self.active(room, now)  # a window that has elapsed ends here, even with no press
        if now < self._next_check:
            return []
        self._next_check = now + self._period
        wall = time.time()
        out = []
        for room in self.cfg.rooms:
            name = self.names[room]
            s = self.sessions.get(room)
            out.append(
                Condition(
                    alarm_id=f"{self.device_id}.{room}.test_mode",
                    type="bells.test_mode",
                    present=s is not None,
                    priority="low",
                    kind="technical",
                    source=self.device_id,
                    location=room,
                    message=f"Call bell in {name} is in test mode: presses there are recorded as tests, not calls",
                    details={
                        "room": room,
                        "until": iso(s.until_wall) if s else None,
                        "by": s.actor if s else None,
                    },
                )
            )
            last = room_last_pass(self.passes, room, self.buttons[room])
            ref = last if last is not None else self.since
            overdue = wall - ref > self.cfg.test_interval_s
            # A stable message: one that counted days would journal an update at every check.
            what = (
                f"last passed {iso(last)}"
                if last is not None
                else f"never tested since monitoring began {iso(self.since)}"
            )
            out.append(
                Condition(
                    alarm_id=f"{self.device_id}.{room}.test_overdue",
                    type="bells.test_overdue",
                    present=overdue,
                    priority="low",
                    kind="maintenance",
                    source=self.device_id,
                    location=room,
                    message=f"Call bell test due in {name}: {what}",
                    # Only stable facts in details: a changing age would journal an update every check.
                    details={
                        "room": room,
                        "last_pass": iso(last) if last is not None else None,
                        "interval_s": self.cfg.test_interval_s,
                    },
                )
            )
        return out

    def state(self) -> dict[str, Any]:
        return {
            room: {"test_mode_until": iso(s.until_wall), "test_by": s.actor}
            for room, s in self.sessions.items()
        }
