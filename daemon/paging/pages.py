"""One page = one ladder notification to one recipient's call address, and its delivery state.

States: ``queued`` (waiting for the line), ``sent`` (the paging system took the block and a call
status is awaited), ``accepted`` (the paging system took it, and reported it delivered when it
reports status), ``failed`` (NAK / busy / no answer after the bounded retries, or a call status
other than delivered, or no status in time), ``cancelled`` (the alarm was accepted or closed
before the page could go: a resolved emergency is never paged), ``suppressed`` (a low technical
alarm at night, by configuration). Every change is a ``paging.delivery`` journal event; its
payload goes out on ``suitemon/<site>/delivery`` (docs/mqtt.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from suitemon.daemon.contract import Message, Topics, dumps
from suitemon.daemon.journal import Event

EVENT = "paging.delivery"
STATES = ("queued", "sent", "accepted", "failed", "cancelled", "suppressed")
FINAL = frozenset({"accepted", "failed", "cancelled", "suppressed"})
CHANNEL = "espa444"


@dataclass
class Page:
    page_id: str  # "<alarm.notify event id>/<recipient>": one page per notification and recipient
    alarm_id: str
    occurrence: str
    step: int
    role: str
    recipient: str
    address: str
    priority: str
    text: str
    emergency: bool
    kind: str = "technical"
    channel: str = CHANNEL
    state: str = "queued"
    attempts: int = 0

    def data(self, **extra: Any) -> dict[str, Any]:
        return {**asdict(self), **extra}

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> Page:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in fields})


def delivery_messages(event: Event, topics: Topics, site: str) -> list[Message]:
    if event.type != EVENT:
        return []
    payload = {"event_id": event.event_id, "ts": event.ts, "site": site, **event.data}
    return [Message(topics.sub("delivery"), dumps(payload), 1, False)]


__all__ = ["CHANNEL", "EVENT", "FINAL", "STATES", "Page", "delivery_messages"]
