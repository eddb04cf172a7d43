"""The MQTT contract: topic names and the messages derived from each journal event.

Displays, pagers and scripts depend on these names (docs/mqtt.md). Change them only
with a CHANGELOG entry. Messages for an event are a pure function of the event, so
replaying the journal after a restart republishes exactly what was due.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from suitemon.daemon import kinds
from suitemon.daemon.journal import Event

log = structlog.get_logger("suitemon.contract")

CONTRACT_VERSION = 1


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def dumps(obj: Any) -> bytes:
    """Strict JSON: a non-finite float (NaN, Infinity are not JSON) goes out as null, and is logged."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError:
        log.error("non-finite number in an outgoing payload; sent as null (a parser upstream let it through)")
        return json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class Topics:
    def __init__(self, base: str, site: str):
        self.root = f"{base}/{site}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def event(self) -> str:
        return f"{self.root}/event"

    @property
    def checkpoint(self) -> str:
        """Signed journal head, retained (daemon/checkpoints.py)."""
        return f"{self.root}/journal/checkpoint"

    def alarm(self, alarm_id: str) -> str:
        return f"{self.root}/alarm/{alarm_id}"

    def device_state(self, device_id: str) -> str:
        return f"{self.root}/device/{device_id}/state"

    def notify(self, role: str) -> str:
        return f"{self.root}/notify/{role}"

    def command(self, actor: str, verb: str) -> str:
        return f"{self.root}/cmd/{actor}/{verb}"

    @property
    def command_filter(self) -> str:
        return f"{self.root}/cmd/+/+"

    def reply(self, actor: str) -> str:
        return f"{self.root}/reply/{actor}"

    def sub(self, *parts: str) -> str:
        return "/".join((self.root, *parts))


# Features add routes (kinds.Feature.routes): fn(event, topics, site) -> extra messages for that event.
Route = Callable[[Event, Topics, str], list[Message]]


def notification_payload(event: Event, site: str) -> dict[str, Any]:
    alarm = event.data["alarm"]
    return {
        "event_id": event.event_id,
        "ts": event.ts,
        "site": site,
        "alarm_id": alarm["alarm_id"],
        "occurrence": alarm["occurrence"],
        "priority": alarm["priority"],
        "kind": alarm["kind"],
        "type": alarm["type"],
        "location": alarm["location"],
        "message": alarm["message"],
        "step": event.data["step"],
        "role": event.data["role"],
        "recipients": event.data["recipients"],
        "reason": event.data["reason"],
        "protocol": alarm.get("protocol"),
        # Per recipient: channel, address, state when told, page_id to join `delivery` messages. None for a
        # notification journaled before plans existed (docs/mqtt.md).
        "delivery": event.data.get("delivery"),
        "reply": {"accept": "cmd/<you>/accept", "reject": "cmd/<you>/reject"},
    }


def messages_for(event: Event, topics: Topics, site: str) -> list[Message]:
    """Every message an event must put on the broker, in the order they go out."""
    msgs: list[Message] = []
    alarm = event.data.get("alarm") if event.alarm_id else None
    if alarm is not None and event.alarm_id:
        # Retained current record first, so a display that sees the event finds the record.
        msgs.append(Message(topics.alarm(event.alarm_id), dumps(alarm), 1, True))
    if event.type == "alarm.notify":
        msgs.append(
            Message(topics.notify(event.data["role"]), dumps(notification_payload(event, site)), 1, False)
        )
    for fn in kinds.routes():
        msgs.extend(fn(event, topics, site))
    msgs.append(Message(topics.event, dumps(event.envelope(site)), 1, False))
    return msgs
