"""Call bells: button levels in, call / emergency alarms out; lamps follow the open alarms.

- A call (MEDIUM clinical) and an emergency (HIGH clinical, ``emergency = true``: ladder and
  protocol) are latching alarms per room. Their *condition* is the button level: present while
  pressed (or latched by the module), absent once released; the *alarm* stays until the
  cancel button is pressed in the room (a remote ``reset`` is refused: daemon/bells/service.py).
- Cancel acts on its rising edge only, so a stuck cancel button cannot swallow later calls.
  It closes the room's call and emergency (staff are in the room). Within one poll the reset
  is applied before the buttons, so a call pressed in the same period, or still held, stays open.
- Lamps: over-door and reassurance lamps are on while the room has an open call or emergency,
  acknowledged or not (UL 1069: silencing never puts the light out). ``outputs()`` derives
  them from the alarm engine; the driver writes them and reads them back; a lamp whose
  read-back disagrees for ``lamp_confirm_s`` is a MEDIUM technical alarm.
- Supervision: losing the module is a HIGH technical alarm naming every room it serves.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from suitemon.daemon.bells.weekly import BellTests
from suitemon.daemon.rules import Condition, Output, Reset, Rules
from suitemon.drivers.callbell_io import BUTTONS

LABEL = {
    "call": "Call button",
    "emergency": "Emergency button",
    "cancel": "Cancel button",
    "door_lamp": "Over-door lamp",
    "reassure_lamp": "Reassurance lamp",
}


class CallBellRules(Rules):
    def __init__(self, device_id, cfg, ctx):
        super().__init__(device_id, cfg, ctx)
        areas = ctx.cfg.areas
        self.names = {room: areas[room].name if room in areas else room for room in cfg.rooms}
        self.alarm_ids = {
            room: {b: f"{device_id}.{room}.{b}" for b in ("call", "emergency")} for room in cfg.rooms
        }
        self.lamps = {room: list(r.lamps()) for room, r in cfg.rooms.items()}
        self.prev: dict[str, dict[str, Any]] = {}
        self.held_since: dict[tuple[str, str], float] = {}
        self.stuck: set[tuple[str, str]] = set()
        self.mismatch_since: dict[tuple[str, str], float] = {}
        self.lamp_faults: set[tuple[str, str]] = set()
        self.desired: dict[str, dict[str, bool]] | None = None
        # Hot-path state: a 50 ms poll of an idle module must cost next to nothing here.
        self._last_values: Any = None
        self._lamp_table = [(room, ids["call"], ids["emergency"]) for room, ids in self.alarm_ids.items()]
        self._out_key: tuple | None = None
        self._desired_changed = False
        self.tests = BellTests(device_id, cfg, ctx, self.names)
        # Alarms restored from the journal (open at a crash): adopt them, so they clear
        # once their cause has gone instead of staying open for ever.
        for room, r in cfg.rooms.items():
            for b in r.inputs():
                if f"{device_id}.{room}.{b}.stuck" in ctx.engine.alarms:
                    self.stuck.add((room, b))
            for lamp in r.lamps():
                if f"{device_id}.{room}.{lamp}.fault" in ctx.engine.alarms:
                    self.lamp_faults.add((room, lamp))

    # -- alarms from buttons -------------------------------------------------
    def button_condition(
        self, room: str, button: str, present: bool, start_step: int = 0, **details: Any
    ) -> Condition:
        name = self.names[room]
        if button == "call":
            return Condition(
                alarm_id=self.alarm_ids[room]["call"],
                type=self.cfg.call_type,
                present=present,
                priority="medium",
                kind="clinical",
                latching=True,
                source=self.device_id,
                location=room,
                message=f"Call from {name}",
                details={"room": room, "room_name": name, **details},
            )
        return Condition(
            alarm_id=self.alarm_ids[room]["emergency"],
            type=self.cfg.emergency_type,
            present=present,
            priority="high",
            kind="clinical",
            latching=True,
            source=self.device_id,
            location=room,
            message=f"EMERGENCY / deteriorating patient in {name}",
            start_step=start_step,
            details={"room": room, "room_name": name, **details},
        )

    def on_reading(self, reading) -> Output:
        now = time.monotonic()
        out: list[Condition | Reset] = []
        values = reading.values
        same = values is self._last_values  # the driver reuses the values while nothing changed
        self._last_values = values
        if not same:
            self._rooms(values["rooms"], now, out)
        if self.held_since or self.stuck:
            out.extend(self._stuck_conditions(now))
        if not same or self._desired_changed or self.mismatch_since:
            self._desired_changed = False
            out.extend(self._lamp_conditions(values["rooms"], now))
        out.extend(self.tests.conditions(now))
        return out

    def _rooms(self, rooms: dict[str, dict[str, Any]], now: float, out: list) -> None:
        for room, lv in rooms.items():
            prev = self.prev.get(room)
            if prev == lv:
                continue
            first = prev is None
            prev = prev or {}
            edges = [b for b in BUTTONS if lv.get(b) and not prev.get(b)]
            if first:
                edges = [b for b in edges if b != "cancel"]  # a level at start is not a press
            self._track_held(room, lv, now)
            if self.tests.active(room, now):
                for b in edges:
                    self.tests.passed(room, b)
            else:
                reset = "cancel" in edges
                if reset:
                    for aid in self.alarm_ids[room].values():
                        out.append(Reset(aid, actor=f"cancel@{room}", reason="cancelled in the room"))
                for b in ("call", "emergency"):
                    if b in lv and (first or reset or lv[b] != prev.get(b)):
                        out.append(self.button_condition(room, b, lv[b], origin="button"))
            self.prev[room] = lv

    # -- stuck inputs -----------------------------------------------------------
    def _track_held(self, room: str, lv: dict[str, Any], now: float) -> None:
        for b in BUTTONS:
            key = (room, b)
            if lv.get(b):
                self.held_since.setdefault(key, now)
            else:
                self.held_since.pop(key, None)

    def _stuck_conditions(self, now: float) -> list[Condition]:
        out = []
        for key in list(self.stuck):
            if key not in self.held_since:
                self.stuck.discard(key)
                out.append(self._stuck(key, False, 0.0))
        for key, since in self.held_since.items():
            if key not in self.stuck and now - since >= self.cfg.stuck_after_s:
                self.stuck.add(key)
                out.append(self._stuck(key, True, now - since))
        return out

    def _stuck(self, key: tuple[str, str], present: bool, held: float) -> Condition:
        room, b = key
        why = {
            "cancel": "calls there cannot be cancelled in the room",
            "call": "new calls from there cannot be told apart",
            "emergency": "new emergencies from there cannot be told apart",
        }[b]
        return Condition(
            alarm_id=f"{self.device_id}.{room}.{b}.stuck",
            type="bells.input_stuck",
            present=present,
            priority="low",
            kind="technical",
            source=self.device_id,
            location=room,
            message=f"{LABEL[b]} in {self.names[room]} held for over {self.cfg.stuck_after_s:g} s "
            f"(stuck or jammed?): {why}",
            details={"room": room, "button": b, "input": getattr(self.cfg.rooms[room], b)},
        )

    # -- lamps --------------------------------------------------------------
    def outputs(self) -> dict[str, dict[str, bool]] | None:
        alarms = self.ctx.engine.alarms
        lamp_until = self.tests.lamp_until
        now = time.monotonic()
        key = tuple(
            call in alarms or emergency in alarms or now < lamp_until.get(room, 0.0)
            for room, call, emergency in self._lamp_table
        )
        if key == self._out_key:
            return None
        self._out_key = key
        self.desired = {
            room: {lamp: on for lamp in self.lamps[room]}
            for (room, _, _), on in zip(self._lamp_table, key, strict=True)
        }
        self._desired_changed = True
        return self.desired

    def _lamp_conditions(self, rooms: dict[str, dict[str, Any]], now: float) -> list[Condition]:
        if self.desired is None:
            return []
        out = []
        for room, lamps in self.desired.items():
            for lamp, want in lamps.items():
                key = (room, lamp)
                seen = rooms[room].get(lamp)
                if seen == want:
                    self.mismatch_since.pop(key, None)
                    if key in self.lamp_faults:
                        self.lamp_faults.discard(key)
                        out.append(self._lamp_fault(key, False, want, seen))
                    continue
                since = self.mismatch_since.setdefault(key, now)
                if key not in self.lamp_faults and now - since >= self.cfg.lamp_confirm_s:
                    self.lamp_faults.add(key)
                    out.append(self._lamp_fault(key, True, want, seen))
        return out

    def _lamp_fault(self, key: tuple[str, str], present: bool, want: bool, seen: Any) -> Condition:
        room, lamp = key
        state = "unknown" if seen is None else ("on" if seen else "off")
        return Condition(
            alarm_id=f"{self.device_id}.{room}.{lamp}.fault",
            type="bells.lamp_fault",
            present=present,
            priority="medium",
            kind="technical",
            source=self.device_id,
            location=room,
            message=f"{LABEL[lamp]} of {self.names[room]} does not follow: wanted "
            f"{'on' if want else 'off'}, reads {state} (coil {getattr(self.cfg.rooms[room], lamp)})",
            details={"room": room, "lamp": lamp, "wanted": want, "read_back": seen},
        )

    # -- supervision ------------------------------------------------------------
    def comm_lost(self, present: bool, default: Condition) -> Output:
        rooms = list(self.cfg.rooms)
        return (
            replace(
                default,
                type="bells.not_supervised",
                priority="high",
                kind="technical",
                message=f"Call bells not supervised in rooms {', '.join(rooms)}: "
                f"{self.cfg.name or self.device_id} is not answering. Check these patients in person.",
                details={**default.details, "rooms": rooms, "room_names": [self.names[r] for r in rooms]},
            ),
        )

    # -- retained device state -----------------------------------------------------
    def state(self, reading) -> dict[str, Any]:
        runner = self.ctx.runners.get(self.device_id)
        polls = runner.polls if runner else 0
        return {
            "lamps_wanted": self.desired,
            "test_mode": self.tests.state(),
            "latching": bool(reading.meta.get("latching")) if reading else None,
            "polls": polls,
            "poll_cpu_ms": round(runner.poll_cpu_s / polls * 1e3, 4) if polls else None,
        }


__all__ = ["CallBellRules"]
