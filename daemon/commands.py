"""Commands from people and systems, over MQTT: ``suitemon/<site>/cmd/<actor>/<verb>``.

The actor is the topic segment, which the broker's pattern ACL ties to the
authenticated username (``cmd/%u/#``), so the journal names who really acted,
never a field the sender could type. A payload is a JSON object; ``request_id``
(any string) is echoed in the reply on ``suitemon/<site>/reply/<actor>``. A bad
command is rejected with a reply and a ``command.rejected`` event, counted and
logged; it never stops the daemon.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import structlog

from suitemon.daemon.alarms import AlarmEngine, AlarmError

log = structlog.get_logger("suitemon.commands")

ACTOR_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
MAX_PAYLOAD = 16 * 1024


class CommandError(Exception):
    """The command is understood but refused; the message goes back to the sender."""


Handler = Callable[[str, dict[str, Any]], Any | Awaitable[Any]]


@dataclass(frozen=True)
class Verb:
    handler: Handler
    required: tuple[str, ...] = ()
    description: str = ""


def _excerpt(payload: bytes) -> str:
    text = payload[:200].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > 200 else "")


class Commands:
    def __init__(self, ctx):
        self.ctx = ctx
        self.verbs: dict[str, Verb] = {}

    def register(self, verb: str, handler: Handler, *, required: tuple[str, ...] = (),
                 description: str = "") -> None:
        if verb in self.verbs:
            raise ValueError(f"command verb '{verb}' registered twice")
        self.verbs[verb] = Verb(handler, required, description)

    async def on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        actor, verb = (parts[-2], parts[-1]) if len(parts) >= 2 else ("?", "?")
        request_id = None
        try:
            if not ACTOR_RE.match(actor):
                raise CommandError(f"actor '{actor[:64]}' is not a valid user name")
            if len(payload) > MAX_PAYLOAD:
                raise CommandError(f"payload of {len(payload)} bytes is larger than {MAX_PAYLOAD}")
            try:
                body = json.loads(payload.decode("utf-8")) if payload else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise CommandError(f"payload is not JSON: {err}") from None
            if not isinstance(body, dict):
                raise CommandError("payload must be a JSON object")
            rid = body.pop("request_id", None)
            if rid is not None and not isinstance(rid, (str, int)):
                raise CommandError("request_id must be a string or a number")
            request_id = rid
            spec = self.verbs.get(verb)
            if spec is None:
                raise CommandError(f"unknown command '{verb}'; known: {', '.join(sorted(self.verbs))}")
            missing = [f for f in spec.required if f not in body]
            if missing:
                raise CommandError(f"missing field(s): {', '.join(missing)}")
            result = spec.handler(actor, body)
            if inspect.isawaitable(result):
                result = await result
        except (CommandError, AlarmError) as err:
            self._reject(actor, verb, request_id, str(err), payload)
            return
        except (KeyError, TypeError, ValueError) as err:
            self._reject(actor, verb, request_id, f"bad field: {err}", payload)
            return
        except Exception as err:  # a handler bug must not take the daemon down
            log.exception("command handler failed", verb=verb, actor=actor)
            self._reject(actor, verb, request_id, f"internal error: {type(err).__name__}", payload)
            return
        self.ctx.metrics.inc("commands.accepted")
        # What the command changed is durable (and queued for MQTT ahead of the reply) before "ok".
        self.ctx.recorder.flush()
        self.ctx.reply(actor, {"request_id": request_id, "verb": verb, "ok": True, "result": result})

    def _reject(self, actor: str, verb: str, request_id, error: str, payload: bytes) -> None:
        self.ctx.metrics.inc("commands.rejected")
        log.warning("command rejected", actor=actor, verb=verb, error=error)
        self.ctx.recorder.record("command.rejected", {
            "verb": verb[:64], "request_id": request_id, "error": error, "payload": _excerpt(payload),
        }, actor=actor[:64] if ACTOR_RE.match(actor) else "unknown")
        if ACTOR_RE.match(actor):
            self.ctx.reply(actor, {"request_id": request_id, "verb": verb[:64], "ok": False, "error": error})


def register_core(commands: Commands, engine: AlarmEngine, recorder) -> None:
    def alarm_id(body):
        aid = body["alarm_id"]
        if not isinstance(aid, str):
            raise CommandError("alarm_id must be a string")
        return aid

    def note(body, key="note"):
        v = body.get(key)
        if v is not None and not isinstance(v, str):
            raise CommandError(f"{key} must be a string")
        return v

    commands.register("ack", lambda actor, b: _ev(engine.acknowledge(alarm_id(b), actor, note(b))),
                      required=("alarm_id",), description="acknowledge an alarm (silences; the light stays)")
    commands.register("reset", lambda actor, b: _ev(engine.reset(alarm_id(b), actor, note(b))),
                      required=("alarm_id",), description="close a latched alarm whose condition has ended")
    commands.register("accept", lambda actor, b: _ev(engine.accept(alarm_id(b), actor)),
                      required=("alarm_id",), description="take a notification: stops its escalation")
    commands.register("reject", lambda actor, b: _ev(engine.reject(alarm_id(b), actor, note(b, "reason"))),
                      required=("alarm_id",), description="decline a notification")

    def correct(actor, b):
        ref, reason = b["event_id"], b["reason"]
        if not isinstance(reason, str) or len(reason.strip()) < 3:
            raise CommandError("a correction needs a reason (records may not be amended without one)")
        if recorder.journal.get(ref) is None:
            raise CommandError(f"no event '{ref}' in the journal")
        data = b.get("data", {})
        if not isinstance(data, dict):
            raise CommandError("data must be an object")
        return _ev(recorder.record("record.correction", {"reason": reason, "data": data}, actor=actor, refers_to=ref))

    commands.register("correct", correct, required=("event_id", "reason"),
                      description="record a correction to an earlier event, with a reason")


def _ev(event) -> dict[str, Any]:
    return {"event_id": event.event_id, "type": event.type}
