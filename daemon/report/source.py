"""Reading the journal for a report: one ordered pass over the period's rows.

The report never trusts anything but the journal. Alarm events carry the full alarm record
after each change, so one pass folds every occurrence into an ``Episode`` (raised, first
acknowledged, accepted, highest escalation step, closed); other events go to the sections
that asked for their type prefix. Rows are parsed one at a time: a month of a busy suite
never sits in memory as objects.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import structlog

from suitemon.daemon.alarms import parse_iso
from suitemon.daemon.report.period import Period

log = structlog.get_logger("suitemon.report")


@dataclass
class Ev:
    seq: int
    ts: float
    type: str
    alarm_id: str | None
    actor: str
    data: dict[str, Any]
    event_id: str = ""
    refers_to: str | None = None


# The few details a section shows; the rest of an alarm's details stay in the journal.
KEPT_DETAILS = ("origin", "baseline_usv_h", "level_usv_h")


@dataclass(slots=True)
class Episode:
    """One occurrence of an alarm, as far as the journal shows it up to the period's end."""

    alarm_id: str
    occurrence: str
    type: str
    priority: str
    kind: str
    source: str | None
    location: str | None
    raised_at: float
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    accepted_at: float | None = None
    accepted_by: str | None = None
    accepted_role: str | None = None
    max_step: int | None = None  # 0-based index of the highest escalation step notified
    closed_at: float | None = None
    closed_by: str | None = None
    closed_reason: str | None = None
    closed_by_event: str | None = None  # alarm.cleared | alarm.reset
    state: str = "active"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.state != "closed"

    def duration_within(self, start: float, end: float) -> float:
        a = max(self.raised_at, start)
        b = min(self.closed_at if self.closed_at is not None else end, end)
        return max(0.0, b - a)


def _t(s: str | None) -> float | None:
    return parse_iso(s) if s else None


class Episodes:
    def __init__(self) -> None:
        self.by_occurrence: dict[str, Episode] = {}

    def feed(self, ev: Ev) -> None:
        rec = ev.data.get("alarm")
        if not isinstance(rec, dict) or "occurrence" not in rec:
            return
        ep = self.by_occurrence.get(rec["occurrence"])
        if ep is None:
            ep = Episode(alarm_id=rec["alarm_id"], occurrence=rec["occurrence"], type=rec.get("type", "?"),
                         priority=rec.get("priority", "?"), kind=rec.get("kind", "?"), source=rec.get("source"),
                         location=rec.get("location"), raised_at=_t(rec.get("raised_at")) or ev.ts,
                         details={k: v for k, v in (rec.get("details") or {}).items() if k in KEPT_DETAILS})
            self.by_occurrence[ep.occurrence] = ep
        ep.state = rec.get("state", ep.state)
        if ep.acknowledged_at is None and rec.get("acknowledged_at"):
            ep.acknowledged_at, ep.acknowledged_by = _t(rec["acknowledged_at"]), rec.get("acknowledged_by")
        esc = rec.get("escalation") or None
        if ev.type == "alarm.notify":
            step = ev.data.get("step")
            if isinstance(step, int):
                ep.max_step = step if ep.max_step is None else max(ep.max_step, step)
        if ev.type == "alarm.accepted" and ep.accepted_at is None:
            ep.accepted_at, ep.accepted_by = ev.ts, ev.actor
            ep.accepted_role = esc.get("role") if esc else None
        if ev.type in ("alarm.cleared", "alarm.reset"):
            ep.closed_at = _t(rec.get("closed_at")) or ev.ts
            ep.closed_by, ep.closed_reason, ep.closed_by_event = rec.get("closed_by"), rec.get("closed_reason"), ev.type

    def restore(self, rec: dict[str, Any]) -> None:
        """An alarm last touched before the period: only its open/closed state at the start matters."""
        if rec.get("occurrence") in self.by_occurrence or rec.get("state") == "closed":
            return
        self.feed(Ev(0, _t(rec.get("updated_at")) or 0.0, "alarm.updated", rec.get("alarm_id"), "system",
                     {"alarm": rec}))

    def all(self) -> list[Episode]:
        return list(self.by_occurrence.values())


Consumer = Callable[[Ev], None]


def ts_text(t: float) -> str:
    # The journal's own format (journal.utc_now_iso): text comparison is then time order.
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def connect_read_only(path: Path) -> sqlite3.Connection:
    # Read only: a report must not be able to change the journal, even by accident.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def seq_bounds(db: sqlite3.Connection, start_text: str, end_text: str) -> tuple[int | None, int | None]:
    """The first and last row of the period, through the ``events_ts`` index (journal schema 3).

    Exact even if the clock once stepped back (seq and ts then disagree in order): MIN/MAX over
    the index range, not the first index entry. Without the index (a journal on read-only media
    that could not be migrated) the same query scans the table: slower, same answer."""
    out = []
    for q, arg in (("SELECT MIN(seq) FROM events {} WHERE ts >= ?", start_text),
                   ("SELECT MAX(seq) FROM events {} WHERE ts < ?", end_text)):
        try:
            out.append(db.execute(q.format("INDEXED BY events_ts"), (arg,)).fetchone()[0])
        except sqlite3.OperationalError:
            log.warning("journal has no events_ts index (schema < 3): scanning the table")
            out.append(db.execute(q.format(""), (arg,)).fetchone()[0])
    return out[0], out[1]


def scan(db: sqlite3.Connection, period: Period, consumers: Iterable[tuple[str, Consumer]],
         episodes: Episodes) -> dict[str, int]:
    """Feed every event of the period, in journal order, to the consumers whose prefix matches."""
    subs = list(consumers)
    counts: dict[str, int] = {"events": 0, "unreadable": 0}
    start_text, end_text = ts_text(period.start_ts), ts_text(period.end_ts)
    lo, hi = seq_bounds(db, start_text, end_text)
    # Alarms last changed before the period that were still open at its start.
    for (body,) in db.execute(
            "SELECT body FROM events WHERE seq IN (SELECT MAX(seq) FROM events WHERE alarm_id IS NOT NULL"
            " AND seq < ? GROUP BY alarm_id)", (lo if lo is not None else 1 << 62,)):
        rec = json.loads(body).get("data", {}).get("alarm")
        if isinstance(rec, dict):
            episodes.restore(rec)
    if lo is None or hi is None or lo > hi:
        return counts
    # Journal order (seq), not time order: a clock stepped back must not reorder an alarm's events.
    rows = db.execute("SELECT seq, ts, type, alarm_id, body, event_id FROM events WHERE seq BETWEEN ? AND ?"
                      " AND ts >= ? AND ts < ? ORDER BY seq", (lo, hi, start_text, end_text))
    for seq, ts, type_, alarm_id, body, event_id in rows:
        counts["events"] += 1
        wanted = [fn for prefix, fn in subs if type_.startswith(prefix)]
        is_alarm = type_.startswith("alarm.")
        if not wanted and not is_alarm:
            continue
        try:
            b = json.loads(body)
            ev = Ev(seq, parse_iso(ts), type_, alarm_id, b.get("actor", "?"), b.get("data") or {}, event_id,
                    b.get("refers_to"))
        except (ValueError, TypeError, AttributeError) as err:
            # Fail loud, lose nothing: the report says how many rows it could not read.
            counts["unreadable"] += 1
            log.error("journal row not readable for the report", seq=seq, type=type_, error=str(err))
            continue
        if is_alarm:
            episodes.feed(ev)
        for fn in wanted:
            fn(ev)
    return counts
