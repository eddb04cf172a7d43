"""Commands from people and systems, over MQTT: ``suitemon/<site>/cmd/<actor>/<verb>``.

The actor is the topic segment, which the broker's pattern ACL ties to the
authenticated username (``cmd/%u/#``), so the journal names who really acted,
never a field the sender could type. Whether that user may send that verb is
decided here against the configured roles (daemon/access.py): default deny, and
every refusal names the rule. A payload is a JSON object; ``request_id`` (any
string) is echoed in the reply on ``suitemon/<site>/reply/<actor>``, and a command
resent with the same ``request_id`` is answered with its first result, not run again
(daemon/request_window.py). A bad command is rejected with a reply and a
``command.rejected`` event, counted and logged; it never stops the daemon.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from suitemon.daemon import access
from suitemon.daemon.alarms import AlarmEngine, AlarmError
from suitemon.daemon.command_error import CommandError
from suitemon.daemon.context import Context
from suitemon.daemon.events import Recorder
from suitemon.daemon.journal import Event
from suitemon.daemon.request_window import RequestWindow

log = structlog.get_logger("suitemon.commands")

ACTOR_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# No command needs more; anything larger is refused before it is decoded. The MQTT link asks
# the broker not to send bigger packets at all (daemon/mqtt.py), and the shipped broker caps them.
MAX_PAYLOAD = 16 * 1024


Handler = Callable[[str, dict[str, Any]], Any | Awaitable[Any]]


AreaOf = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Verb:
    handler: Handler
    required: tuple[str, ...] = ()
    description: str = ""
    area: AreaOf | None = None  # the area a command is about, for area-limited grants


class Refused(Exception):
    """Not authorised: the rule that refused is journaled with the rejection."""

    def __init__(self, decision: access.Decision):
        super().__init__(decision.reason)
        self.rule = decision.rule


def _excerpt(payload: bytes) -> str:
    text = payload[:200].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > 200 else "")


class Commands:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.verbs: dict[str, Verb] = {}
        self.window = RequestWindow(ctx.recorder)

    def register(
        self,
        verb: str,
        handler: Handler,
        *,
        required: tuple[str, ...] = (),
        description: str = "",
        area: AreaOf | None = None,
    ) -> None:
        if verb in self.verbs:
            raise ValueError(f"command verb '{verb}' registered twice")
        self.verbs[verb] = Verb(handler, required, description, area)

    def _area(self, spec: Verb, body: dict[str, Any]) -> str | None:
        if spec.area is None:
            return None
        try:
            where = spec.area(body)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return where if isinstance(where, str) else None

    async def on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        actor, verb = (parts[-2], parts[-1]) if len(parts) >= 2 else ("?", "?")
        request_id, rule = None, None
        try:
            if not ACTOR_RE.match(actor):
                raise CommandError(f"actor '{actor[:64]}' is not a valid user name")
            if len(payload) > MAX_PAYLOAD:
                self.ctx.metrics.inc("commands.oversize")
                raise CommandError(f"payload of {len(payload)} bytes is larger than {MAX_PAYLOAD}")
            # Identity and verb first: whatever else is wrong with it, a command from an account
            # that may not send this verb at all is refused as such (its request_id echoed if any).
            pre = access.decide(self.ctx.cfg, actor, verb, area=lambda: "\0")
            denied = Refused(pre) if not pre.ok and pre.rule in ("no-role", "default-deny") else None
            try:
                body = json.loads(payload.decode("utf-8")) if payload else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise denied or CommandError(f"payload is not JSON: {err}") from None
            if not isinstance(body, dict):
                raise denied or CommandError("payload must be a JSON object")
            rid = body.pop("request_id", None)
            if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
                raise denied or CommandError("request_id must be a string or a number")
            if isinstance(rid, str) and len(rid) > 128:
                raise denied or CommandError("request_id is longer than 128 characters")
            request_id = rid
            if denied is not None:
                raise denied
            spec = self.verbs.get(verb)
            if spec is None:
                raise CommandError(f"unknown command '{verb}'; known: {', '.join(sorted(self.verbs))}")
            decision = access.decide(self.ctx.cfg, actor, verb, area=lambda: self._area(spec, body))
            if not decision.ok:
                raise Refused(decision)
            missing = [f for f in spec.required if f not in body]
            if missing:
                raise CommandError(f"missing field(s): {', '.join(missing)}")
            once = request_id is not None and access.verb_class(verb) != access.READ
            if once:
                first = await self.window.claim(actor, request_id, verb)
                if first is not None:
                    self.ctx.metrics.inc("commands.repeated")
                    log.info(
                        "command repeated; answered with its first result",
                        actor=actor,
                        verb=verb,
                        request_id=request_id,
                    )
                    self.ctx.reply(actor, {**first, "repeated": True})
                    return
            try:
                result = spec.handler(actor, body)
                if inspect.isawaitable(result):
                    result = await result
            except BaseException:
                if once:
                    self.window.release(actor, request_id)
                raise
        except Refused as err:
            rule = err.rule
            self._reject(actor, verb, request_id, str(err), payload, rule=rule)
            return
        except (CommandError, AlarmError) as err:
            self._reject(actor, verb, request_id, str(err), payload)
            return
        except (KeyError, TypeError, ValueError) as err:
            self._reject(actor, verb, request_id, f"bad field: {err}", payload)
            return
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a handler bug must not take the daemon down
            log.exception("command handler failed", verb=verb, actor=actor)
            self._reject(actor, verb, request_id, f"internal error: {type(err).__name__}", payload)
            return
        self.ctx.metrics.inc("commands.accepted")
        reply = {"request_id": request_id, "verb": verb, "ok": True, "result": result}
        if once:
            # Journaled with what the command changed (one group commit), so the window
            # survives a restart exactly as far as the change itself does.
            self.window.done(actor, request_id, verb, reply)
        # What the command changed is durable (and queued for MQTT ahead of the reply) before "ok".
        self.ctx.recorder.flush()
        self.ctx.reply(actor, reply)

    def _reject(
        self, actor: str, verb: str, request_id: object, error: str, payload: bytes, rule: str | None = None
    ) -> None:
        self.ctx.metrics.inc("commands.rejected")
        if rule is not None:
            self.ctx.metrics.inc("commands.unauthorised")
        log.warning("command rejected", actor=actor, verb=verb, error=error, rule=rule)
        data = {"verb": verb[:64], "request_id": request_id, "error": error, "payload": _excerpt(payload)}
        if rule is not None:
            data["rule"] = rule
        self.ctx.recorder.record(
            "command.rejected", data, actor=actor[:64] if ACTOR_RE.match(actor) else "unknown"
        )
        if ACTOR_RE.match(actor):
            self.ctx.reply(actor, {"request_id": request_id, "verb": verb[:64], "ok": False, "error": error})


def register_core(commands: Commands, engine: AlarmEngine, recorder: Recorder) -> None:
    def alarm_id(body: dict[str, Any]) -> str:
        aid = body["alarm_id"]
        if not isinstance(aid, str):
            raise CommandError("alarm_id must be a string")
        return aid

    def note(body: dict[str, Any], key: str = "note") -> str | None:
        v = body.get(key)
        if v is not None and not isinstance(v, str):
            raise CommandError(f"{key} must be a string")
        return v

    def alarm_area(b: dict[str, Any]) -> str | None:
        rec = engine.alarms.get(b["alarm_id"])
        return rec.location if rec is not None else None

    commands.register(
        "ack",
        lambda actor, b: _ev(engine.acknowledge(alarm_id(b), actor, note(b))),
        required=("alarm_id",),
        area=alarm_area,
        description="acknowledge an alarm (silences; the light stays)",
    )
    commands.register(
        "reset",
        lambda actor, b: _ev(engine.reset(alarm_id(b), actor, note(b))),
        required=("alarm_id",),
        area=alarm_area,
        description="close a latched alarm whose condition has ended",
    )
    commands.register(
        "accept",
        lambda actor, b: _ev(engine.accept(alarm_id(b), actor)),
        required=("alarm_id",),
        area=alarm_area,
        description="take a notification: stops its escalation",
    )
    commands.register(
        "reject",
        lambda actor, b: _ev(engine.reject(alarm_id(b), actor, note(b, "reason"))),
        required=("alarm_id",),
        area=alarm_area,
        description="decline a notification",
    )

    def event_area(b: dict[str, Any]) -> object:  # a str, or anything a journal event holds there
        ev = recorder.journal.get(b["event_id"])
        if ev is None:
            return None
        alarm = ev.data.get("alarm") or {}
        return alarm.get("location") or ev.data.get("area") or ev.data.get("room")

    def correct(actor: str, b: dict[str, Any]) -> dict[str, Any]:
        ref, reason = b["event_id"], b["reason"]
        if not isinstance(reason, str) or len(reason.strip()) < 3:
            raise CommandError("a correction needs a reason (records may not be amended without one)")
        if recorder.journal.get(ref) is None:
            raise CommandError(f"no event '{ref}' in the journal")
        data = b.get("data", {})
        if not isinstance(data, dict):
            raise CommandError("data must be an object")
        return _ev(
            recorder.record("record.correction", {"reason": reason, "data": data}, actor=actor, refers_to=ref)
        )

    commands.register(
        "correct",
        correct,
        required=("event_id", "reason"),
        area=event_area,
        description="record a correction to an earlier event, with a reason",
    )


def _ev(event: Event) -> dict[str, Any]:
    return {"event_id": event.event_id, "type": event.type}
