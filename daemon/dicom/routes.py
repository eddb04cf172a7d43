"""MQTT messages derived from DICOM events (journaled first, then published by the outbox)."""

from __future__ import annotations

from suitemon.daemon.contract import Message, Topics, dumps
from suitemon.daemon.journal import Event


def dose_summary(event: Event, topics: Topics, site: str) -> list[Message]:
    """``dose/study``: one message per study summary (and per revision of it)."""
    if event.type != "dicom.dose_summary":
        return []
    payload = {"event_id": event.event_id, "ts": event.ts, "site": site, **event.data}
    return [Message(topics.sub("dose", "study"), dumps(payload), 1, False)]
