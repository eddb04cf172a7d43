"""Call-bell feature: its commands (staff-raised deterioration, bell test) and config checks.

Commands (``suitemon/<site>/cmd/<actor>/<verb>``):
- ``deteriorate`` {room, news2?, single_parameter_3?, note?}: a member of staff raises the
  room's emergency (the same alarm as its emergency button). NEWS2 chooses where the
  ladder starts: an aggregate score >= 7 starts at the step marked ``critical_care``;
  5-6, a single parameter scoring 3, a lower score or no score start at step 0 (the
  normal urgent ladder; staff concern alone is enough to raise it). On an alert that is
  already open, a score >= 7 moves a ladder below the critical-care step up to it.
- ``bell_test`` {room, on?=true, window_s?}: start or end a room's test mode.
- ``force_close`` {alarm_id, reason}: close a call or emergency whose room module is faulty
  (no answer, a stuck button, a lamp that does not follow), so the cancel button cannot.

A call or emergency is closed by the cancel button in the room (UL 1069; hazard H1): a
momentary button reads absent once released, so a remote ``reset`` would put the over-door
lamp out with nobody in the room. ``reset`` of these alarms is therefore refused. Only a role
granted ``force_close`` may close one from afar, with a reason, and only while the room's
module is faulty; the journal records it as ``alarm.force_closed`` with the fault.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from suitemon.daemon.commands import CommandError
from suitemon.drivers.callbell_io import BUTTONS, LAMPS
from suitemon.drivers.io_module import load_io_profile

log = structlog.get_logger("suitemon.bells")

KIND = "callbell_io"


# -- NEWS2 -----------------------------------------------------------------------
def news2_band(score: int | None, single_parameter_3: bool = False) -> str | None:
    """NEWS2 clinical risk (RCP 2017): high >= 7, medium 5-6, low-medium = a 3 in one parameter."""
    if score is None:
        return "low-medium" if single_parameter_3 else None
    if score >= 7:
        return "high"
    if score >= 5:
        return "medium"
    return "low-medium" if single_parameter_3 else "low"


def ladder_start(ladder, band: str | None) -> int:
    """Step to start the emergency ladder at: the critical-care step for a high NEWS2, else 0."""
    if band == "high":
        for i, step in enumerate(ladder.steps):
            if step.critical_care:
                return i
    return 0


# -- commands --------------------------------------------------------------------
def _bells_devices(cfg) -> dict[str, Any]:
    return {did: d for did, d in cfg.devices.items() if d.kind == KIND and d.enabled}


class BellsService:
    def __init__(self, ctx):
        self.ctx = ctx
        self.devices = _bells_devices(ctx.cfg)
        if self.devices:
            ctx.commands.register(
                "deteriorate",
                self.deteriorate,
                required=("room",),
                area=lambda b: b["room"],
                description="raise a room's deterioration/emergency alert (optional NEWS2)",
            )
            ctx.commands.register(
                "bell_test",
                self.bell_test,
                required=("room",),
                area=lambda b: b["room"],
                description="start (on=true) or end (on=false) a room's bell test mode",
            )
            ctx.commands.register(
                "force_close",
                self.force_close,
                required=("alarm_id", "reason"),
                area=self._alarm_room,
                description="close a call/emergency whose room module is faulty, with a reason",
            )
            ctx.engine.remote_reset_guards.append(self._refuse_remote_reset)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def _bell_alarm(self, alarm_id: Any) -> tuple[str, str, str] | None:
        """(device, room, button) if alarm_id is one of our call/emergency alarms."""
        if not isinstance(alarm_id, str):
            return None
        for did, dev in self.devices.items():
            for room in dev.rooms:
                for button in ("call", "emergency"):
                    if alarm_id == f"{did}.{room}.{button}":
                        return did, room, button
        return None

    def _alarm_room(self, body: dict[str, Any]) -> str | None:
        found = self._bell_alarm(body.get("alarm_id"))
        return found[1] if found else None

    def _refuse_remote_reset(self, rec) -> str | None:
        found = self._bell_alarm(rec.alarm_id)
        if found is None:
            return None
        return (
            f"a {found[2]} is closed by the cancel button in the room, not remotely (UL 1069: nobody may "
            f"be with the patient); if the room's module is faulty, an engineer may use force_close "
            f"with a reason"
        )

    def module_fault(self, did: str, room: str) -> str | None:
        """Why the room's module cannot close its alarms itself, or None if it can."""
        alarms = self.ctx.engine.alarms
        runner = self.ctx.runners.get(did)
        if runner is None:
            return f"call-bell device '{did}' is not running"
        if runner.comm_lost or f"{did}.comm_lost" in alarms:
            return f"call-bell device '{did}' is not answering"
        prefix = f"{did}.{room}."
        for aid in sorted(alarms):
            if aid.startswith(prefix) and (aid.endswith(".stuck") or aid.endswith(".fault")):
                return f"open fault alarm {aid}"
        return None

    def force_close(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        found = self._bell_alarm(body["alarm_id"])
        if found is None:
            raise CommandError("force_close is for call and emergency alarms of call bells only")
        did, room, _ = found
        reason = body["reason"]
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            raise CommandError("force_close needs a reason of at least 10 characters (it is journaled)")
        fault = self.module_fault(did, room)
        if fault is None:
            raise CommandError(
                f"the module of room '{room}' is working: close the alarm with the cancel button in the room"
            )
        ev = self.ctx.engine.force_close(body["alarm_id"], actor, reason.strip(), fault)
        return {"event_id": ev.event_id, "type": ev.type, "fault": fault}

    def _rules_for(self, room: Any):
        if not isinstance(room, str):
            raise CommandError("room must be a string")
        for did, dev in self.devices.items():
            if room in dev.rooms:
                runner = self.ctx.runners.get(did)
                if runner is None:
                    raise CommandError(f"call-bell device '{did}' is not running")
                return did, dev, runner.rules
        rooms = sorted(r for d in self.devices.values() for r in d.rooms)
        raise CommandError(f"no call bell in room '{room}'; rooms: {', '.join(rooms)}")

    def deteriorate(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        did, dev, rules = self._rules_for(body["room"])
        room = body["room"]
        score = body.get("news2")
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 20
        ):
            raise CommandError("news2 must be a whole number 0..20 (the NEWS2 aggregate score)")
        red = body.get("single_parameter_3", False)
        if not isinstance(red, bool):
            raise CommandError("single_parameter_3 must be true or false")
        note = body.get("note")
        if note is not None and not isinstance(note, str):
            raise CommandError("note must be a string")
        band = news2_band(score, red)
        at = self.ctx.cfg.alarm_types[dev.emergency_type]
        step = ladder_start(self.ctx.cfg.ladders[at.ladder], band)
        engine = self.ctx.engine
        alarm_id = rules.alarm_ids[room]["emergency"]
        details = {
            "origin": "staff",
            "raised_by": actor,
            "news2": score,
            "news2_band": band,
            "single_parameter_3": red,
            "note": note,
        }
        rec = engine.alarms.get(alarm_id)
        already_open = rec is not None
        if rec is None:
            engine.apply(rules.button_condition(room, "emergency", True, start_step=step, **details))
            held = bool((rules.prev.get(room) or {}).get("emergency"))
            if not held:
                # A staff-raised alert is a momentary cause, like a press: the alarm latches on,
                # and it can be reset once dealt with.
                engine.apply(rules.button_condition(room, "emergency", False, **details))
            rec = engine.get(alarm_id)
            moved = False
        else:
            moved = engine.escalator.jump(rec, step, "news2") if step else False
            # Not tied to the alarm id on purpose: the newest event of an alarm must carry its
            # snapshot (restore reads it), so this note names the alarm in its data instead.
            engine.recorder.record(
                "bells.deterioration",
                {
                    "device": did,
                    "room": room,
                    "alarm_id": alarm_id,
                    **details,
                    "moved_to_step": step if moved else None,
                },
                actor=actor,
            )
        log.warning(
            "deterioration raised by staff", room=room, by=actor, news2=score, band=band, start_step=step
        )
        esc = rec.escalation
        return {
            "alarm_id": alarm_id,
            "occurrence": rec.occurrence,
            "news2_band": band,
            "step": esc.step if esc else None,
            "already_open": already_open,
            "moved": moved,
        }

    def bell_test(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        _did, _dev, rules = self._rules_for(body["room"])
        on = body.get("on", True)
        if not isinstance(on, bool):
            raise CommandError("on must be true or false")
        window = body.get("window_s")
        if window is not None and (
            isinstance(window, bool) or not isinstance(window, (int, float)) or window <= 0
        ):
            raise CommandError("window_s must be a positive number of seconds")
        if on:
            return rules.tests.start(body["room"], actor, window)
        result = rules.tests.stop(body["room"], actor, "ended by command")
        if result is None:
            raise CommandError(f"room '{body['room']}' is not in test mode")
        return result


# -- config checks (``check-config`` and ``run``) -----------------------------------------
def check_config(cfg) -> Iterable[tuple[str, str]]:
    devices = _bells_devices(cfg)
    served: dict[str, str] = {}
    for did, dev in devices.items():
        base = f"devices.{did}"
        io = load_io_profile(dev.profile)
        inputs: dict[int, str] = {}
        coils: dict[int, str] = {}
        for room, r in dev.rooms.items():
            path = f"{base}.rooms.{room}"
            if room not in cfg.areas:
                yield path, f"unknown area '{room}' (rooms are area ids)"
            if room in served:
                yield path, f"room is already served by devices.{served[room]}"
            served.setdefault(room, did)
            if r.call is None and r.emergency is None:
                yield path, "a room needs a call or an emergency input"
            for b in BUTTONS:
                n = getattr(r, b)
                if n is None:
                    continue
                if n >= io.inputs:
                    yield (
                        f"{path}.{b}",
                        f"input {n} does not exist: profile '{io.name}' has inputs 0..{io.inputs - 1}",
                    )
                elif n in inputs:
                    yield f"{path}.{b}", f"input {n} is already wired to {inputs[n]}"
                inputs.setdefault(n, f"{room}.{b}")
            for lamp in LAMPS:
                n = getattr(r, lamp)
                if n is None:
                    continue
                if n >= io.coils:
                    yield (
                        f"{path}.{lamp}",
                        (
                            f"coil {n} does not exist: profile '{io.name}' has "
                            f"{'coils 0..' + str(io.coils - 1) if io.coils else 'no coils'}"
                        ),
                    )
                elif n in coils:
                    yield f"{path}.{lamp}", f"coil {n} is already wired to {coils[n]}"
                coils.setdefault(n, f"{room}.{lamp}")
        yield from _check_types(cfg, did, dev)


def _check_types(cfg, did: str, dev) -> Iterable[tuple[str, str]]:
    call = cfg.alarm_types.get(dev.call_type)
    if call is not None and not call.latching:
        yield (
            f"alarm_types.{dev.call_type}.latching",
            f"a call must latch until cancelled in the room (UL 1069); used by devices.{did}",
        )
    et = dev.emergency_type
    at = cfg.alarm_types.get(et)
    if at is None:
        yield (
            f"devices.{did}.emergency_type",
            f"alarm type '{et}' is not configured: add [alarm_types.\"{et}\"] with emergency = true, "
            f"priority = \"high\", latching = true, a ladder and the site's protocol",
        )
        return
    p = f"alarm_types.{et}"
    if not at.emergency:
        yield f"{p}.emergency", f"must be true: devices.{did} raises deterioration alerts with it"
        if at.protocol is None:  # the core check only looks at types marked emergency
            yield f"{p}.protocol", "an emergency alarm type needs the site's emergency protocol"
        if at.ladder is None:
            yield f"{p}.ladder", "an emergency alarm type needs an escalation ladder"
    if at.priority != "high":
        yield f"{p}.priority", "a deterioration/emergency alert is HIGH priority"
    if not at.latching:
        yield f"{p}.latching", "an emergency must latch until reset in the room or by command"
    ladder = cfg.ladders.get(at.ladder) if at.ladder else None
    if ladder is not None and not any(s.critical_care for s in ladder.steps):
        yield (
            f"ladders.{at.ladder}.steps",
            "the emergency ladder needs a step marked critical_care = true (NEWS2 >= 7 starts there)",
        )
