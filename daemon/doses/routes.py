"""MQTT messages derived from dose and uptake events (docs/dispenser.md lists them).

They go out through the outbox with their event, so each one is journaled before it
is published and re-sent until the broker acknowledges it. Payloads carry the
pseudonymous patient reference and the room, never a name or a date of birth.
"""

from __future__ import annotations

from suitemon.daemon.contract import Message, Topics, dumps
from suitemon.daemon.journal import Event

ADMINISTRATION = ("dose", "administration")
SUMMARY = ("dose", "summary")


def _base(event: Event, site: str) -> dict:
    return {"event_id": event.event_id, "ts": event.ts, "site": site}


def dose_messages(event: Event, topics: Topics, site: str) -> list[Message]:
    if event.type == "dose.administered":
        return [
            Message(
                topics.sub(*ADMINISTRATION), dumps({**_base(event, site), "record": event.data}), 1, False
            )
        ]
    if event.type == "dose.summary":
        # Retained: a board that starts later still finds the latest day's figures.
        return [Message(topics.sub(*SUMMARY), dumps({**_base(event, site), **event.data}), 1, True)]
    if event.type == "uptake.ready":
        d = event.data
        return [
            Message(topics.sub("uptake", d["room"], "ready"), dumps({**_base(event, site), **d}), 1, False)
        ]
    return []


__all__ = ["ADMINISTRATION", "SUMMARY", "dose_messages"]
