"""What each recipient of a notification will get, decided when the notification is journaled.

Channel features (ESPA 4.4.4 pages, apprise messages) name a planner in the feature table
(``Feature.delivery_plan``): ``fn(cfg, alarm, recipients, event_id) -> list of entries`` for the
recipients that channel reaches. The plan is part of the ``alarm.notify`` event, so the
``notify/<role>`` payload stays a pure function of the event, and the channel's service acts on the
same decision (a page planned ``suppressed`` is never sent). A recipient no channel reaches gets one
entry with ``state = "none"``: reached only by ``notify/<role>`` consumers and the board.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from suitemon.daemon import kinds

Entry = dict[str, Any]
Planner = Callable[[Any, dict[str, Any], Sequence[str], str], list[Entry]]

PLAN_STATES = ("queued", "suppressed", "none")


def unreached(recipient: str) -> Entry:
    return {"recipient": recipient, "channel": None, "address": None, "state": "none", "page_id": None}


def plan(cfg: Any, alarm: dict[str, Any], recipients: Sequence[str], event_id: str) -> list[Entry]:
    """Every channel's entries, in recipient order; ``none`` for a recipient nobody pages."""
    entries: list[Entry] = []
    if cfg is not None:
        for planner in kinds.delivery_planners():
            entries.extend(planner(cfg, alarm, recipients, event_id))
    by_recipient: dict[str, list[Entry]] = {r: [] for r in recipients}
    for e in entries:
        by_recipient.setdefault(e["recipient"], []).append(e)
    return [e for r, es in by_recipient.items() for e in (es or [unreached(r)])]
