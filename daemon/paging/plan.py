"""Delivery planners (daemon/delivery_plan.py): which recipients a notification pages or messages.

The decision taken here is the one the services act on: the ESPA service sends what is planned
``queued`` and suppresses what is planned ``suppressed``, so the ``notify/<role>`` payload never
announces a page that will not go (or hides one that will).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from suitemon.daemon.paging.apprise_channel import CHANNEL as APPRISE
from suitemon.daemon.paging.apprise_channel import page_id as apprise_page_id
from suitemon.daemon.paging.apprise_channel import redact
from suitemon.daemon.paging.pages import CHANNEL as ESPA

NIGHT_REASON = "low-priority alarm at night (paging.page_low_technical_at_night = false)"


def is_emergency(cfg: Any, alarm: dict[str, Any]) -> bool:
    at = cfg.alarm_types.get(alarm["type"])
    return bool(at is not None and at.emergency)


def night_suppressed(cfg: Any, alarm: dict[str, Any]) -> bool:
    """A LOW technical alarm inside the configured night is not paged (emergencies always are)."""
    paging = cfg.paging
    night = paging.night
    if night is None or paging.page_low_technical_at_night:
        return False
    if is_emergency(cfg, alarm) or alarm["priority"] != "low" or alarm["kind"] != "technical":
        return False
    return night.contains(datetime.now(ZoneInfo(cfg.site.timezone)).time())


def espa_page_id(event_id: str, recipient: str) -> str:
    return f"{event_id}/{recipient}"


def espa_plan(
    cfg: Any, alarm: dict[str, Any], recipients: Sequence[str], event_id: str
) -> list[dict[str, Any]]:
    if getattr(cfg, "paging", None) is None:
        return []
    state = "suppressed" if night_suppressed(cfg, alarm) else "queued"
    return [
        {
            "recipient": rid,
            "channel": ESPA,
            "address": cfg.paging.recipients[rid],
            "state": state,
            "page_id": espa_page_id(event_id, rid),
        }
        for rid in recipients
        if rid in cfg.paging.recipients
    ]


def apprise_plan(
    cfg: Any, alarm: dict[str, Any], recipients: Sequence[str], event_id: str
) -> list[dict[str, Any]]:
    messaging = getattr(cfg, "messaging", None)
    if messaging is None:
        return []
    return [
        {
            "recipient": rid,
            "channel": APPRISE,
            "address": ", ".join(redact(u) for u in messaging.recipients[rid]),
            "state": "queued",
            "page_id": apprise_page_id(event_id, rid),
        }
        for rid in recipients
        if messaging.recipients.get(rid)
    ]
