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
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    state_seen: bool = False  # a row of this fold set the state (joining folds of segments needs it)

    @property
    def open(self) -> bool:
        return self.state != "closed"

    def duration_within(self, start: float, end: float) -> float:
        a = max(self.raised_at, start)
        b = min(self.closed_at if self.closed_at is not None else end, end)
        return max(0.0, b - a)


def _i(s: Any) -> Any:
    return sys.intern(s) if isinstance(s, str) else s


def _t(s: str | None) -> float | None:
    return parse_iso(s) if s else None


# What the fold reads of an alarm event, as paths into the row's body. SQLite extracts them (in C)
# for the scan: a busy month is mostly alarm events, and parsing each whole snapshot in Python
# would be most of a report's time (bench/report_month.py).
ALARM_PATHS = (
    "$.data.alarm.occurrence",
    "$.data.alarm.alarm_id",
    "$.data.alarm.type",
    "$.data.alarm.priority",
    "$.data.alarm.kind",
    "$.data.alarm.source",
    "$.data.alarm.location",
    "$.data.alarm.raised_at",
    "$.data.alarm.state",
    "$.data.alarm.acknowledged_at",
    "$.data.alarm.acknowledged_by",
    "$.data.alarm.escalation.role",
    "$.data.alarm.closed_at",
    "$.data.alarm.closed_by",
    "$.data.alarm.closed_reason",
    "$.data.step",
    "$.actor",
    *(f"$.data.alarm.details.{k}" for k in KEPT_DETAILS),
)
ALARM_SQL = "json_extract(body, " + ", ".join(f"'{p}'" for p in ALARM_PATHS) + ")"


def alarm_values(body: dict[str, Any]) -> list[Any]:
    """The same values as ALARM_SQL, from a parsed body."""
    out = []
    for path in ALARM_PATHS:
        v: Any = body
        for key in path[2:].split("."):
            v = v.get(key) if isinstance(v, dict) else None
        out.append(v)
    return out


class Episodes:
    def __init__(self) -> None:
        self.by_occurrence: dict[str, Episode] = {}

    def feed(self, ev: Ev) -> None:
        self.feed_values(ev.type, ev.ts, alarm_values({"data": ev.data, "actor": ev.actor}))

    def feed_values(self, type_: str, ts: float, v: list[Any]) -> None:
        (
            occurrence,
            alarm_id,
            atype,
            priority,
            kind,
            source,
            location,
            raised_at,
            state,
            ack_at,
            ack_by,
            role,
            closed_at,
            closed_by,
            closed_reason,
            step,
            actor,
            *details,
        ) = v
        if not isinstance(occurrence, str) or not isinstance(alarm_id, str):
            return
        ep = self.by_occurrence.get(occurrence)
        if ep is None:
            # A month holds hundreds of thousands of episodes of a few dozen alarms: share the names.
            ep = Episode(
                alarm_id=_i(alarm_id),
                occurrence=occurrence,
                type=_i(atype or "?"),
                priority=_i(priority or "?"),
                kind=_i(kind or "?"),
                source=_i(source),
                location=_i(location),
                raised_at=_t(raised_at) or ts,
                details={k: d for k, d in zip(KEPT_DETAILS, details, strict=True) if d is not None},
            )
            self.by_occurrence[occurrence] = ep
        if state:
            ep.state, ep.state_seen = state, True
        if ep.acknowledged_at is None and ack_at:
            ep.acknowledged_at, ep.acknowledged_by = _t(ack_at), _i(ack_by)
        if type_ == "alarm.notify" and isinstance(step, int):
            ep.max_step = step if ep.max_step is None else max(ep.max_step, step)
        if type_ == "alarm.accepted" and ep.accepted_at is None:
            ep.accepted_at, ep.accepted_by, ep.accepted_role = ts, _i(actor), _i(role)
        if type_ in ("alarm.cleared", "alarm.reset"):
            ep.closed_at = _t(closed_at) or ts
            ep.closed_by, ep.closed_reason, ep.closed_by_event = _i(closed_by), _i(closed_reason), type_

    def restore(self, rec: dict[str, Any]) -> None:
        """An alarm last touched before the period: only its open/closed state at the start matters."""
        if rec.get("occurrence") in self.by_occurrence or rec.get("state") == "closed":
            return
        self.feed(
            Ev(
                0,
                _t(rec.get("updated_at")) or 0.0,
                "alarm.updated",
                rec.get("alarm_id"),
                "system",
                {"alarm": rec},
            )
        )

    def all(self) -> list[Episode]:
        return list(self.by_occurrence.values())

    def join(self, later: Iterable[Episode]) -> None:
        """Add the fold of the rows that follow (a later segment), as if they had been fed here:
        what the first event sets stays, the last state and close win, the first acknowledgement
        and acceptance stay, the highest step wins."""
        for b in later:
            a = self.by_occurrence.get(b.occurrence)
            if a is None:
                self.by_occurrence[b.occurrence] = b
                continue
            if b.state_seen:
                a.state, a.state_seen = b.state, True
            if a.acknowledged_at is None and b.acknowledged_at is not None:
                a.acknowledged_at, a.acknowledged_by = b.acknowledged_at, b.acknowledged_by
            if b.max_step is not None:
                a.max_step = b.max_step if a.max_step is None else max(a.max_step, b.max_step)
            if a.accepted_at is None and b.accepted_at is not None:
                a.accepted_at, a.accepted_by, a.accepted_role = b.accepted_at, b.accepted_by, b.accepted_role
            if b.closed_at is not None:
                a.closed_at, a.closed_by, a.closed_reason = b.closed_at, b.closed_by, b.closed_reason
                a.closed_by_event = b.closed_by_event


Consumer = Callable[[Ev], None]


def ts_text(t: float) -> str:
    # The journal's own format (journal.utc_now_iso): text comparison is then time order.
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def connect_read_only(path: Path) -> sqlite3.Connection:
    # Read only: a report must not be able to change the journal, even by accident.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def seq_bounds(db: sqlite3.Connection, start_text: str, end_text: str) -> tuple[int | None, int | None]:
    """The first and last row of the period, through the ``events_ts`` index (journal schema 3).

    Exact even if the clock once stepped back (seq and ts then disagree in order): MIN/MAX over
    the index range, not the first index entry. Without the index (a journal on read-only media
    that could not be migrated) the same query scans the table: slower, same answer."""
    out = []
    for q, arg in (
        ("SELECT MIN(seq) FROM events {} WHERE ts >= ?", start_text),
        ("SELECT MAX(seq) FROM events {} WHERE ts < ?", end_text),
    ):
        try:
            out.append(db.execute(q.format("INDEXED BY events_ts"), (arg,)).fetchone()[0])
        except sqlite3.OperationalError:
            log.warning("journal has no events_ts index (schema < 3): scanning the table")
            out.append(db.execute(q.format(""), (arg,)).fetchone()[0])
    return out[0], out[1]


# Rows of the period per share of the alarm fold: big enough that a share's setup is noise, small
# enough that the shares and the chain verification's segments keep every core busy to the end.
FOLD_ROWS = 100_000


@dataclass
class Fold:
    """One share of the pass: the alarm rows of seq lo..hi folded, what could not be read."""

    episodes: list[Episode]
    events: int
    unreadable: list[tuple[int, str, str | None]]  # seq, type, error (None: not JSON)


def fold_alarms(path: Path, lo: int, hi: int, start_text: str, end_text: str) -> Fold:
    """The alarm rows of seq lo..hi within the period, folded into episodes (in a worker process).
    SQLite extracts the fields (in C): a busy month is mostly alarm events, and parsing each whole
    snapshot in Python would be most of a report's time (bench/report_month.py)."""
    db = connect_read_only(path)
    episodes, unreadable, n = Episodes(), [], 0
    try:
        rows = db.execute(
            f"SELECT seq, ts, type, CASE WHEN json_valid(body) THEN {ALARM_SQL} END FROM events"
            " WHERE seq BETWEEN ? AND ? AND ts >= ? AND ts < ? AND type GLOB 'alarm.*' ORDER BY seq",
            (lo, hi, start_text, end_text),
        )
        for seq, ts, type_, alarm_json in rows:
            n += 1
            if alarm_json is None:
                unreadable.append((seq, type_, None))
                continue
            try:
                episodes.feed_values(type_, parse_iso(ts), _array(alarm_json))
            except (ValueError, TypeError, AttributeError) as err:
                unreadable.append((seq, type_, str(err)))
    finally:
        db.close()
    return Fold(episodes.all(), n, unreadable)


_scan_json = json.JSONDecoder().scan_once


def _array(text: str) -> list[Any]:
    """json.loads of the array SQLite built, without its per-call checks (a million calls)."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration as err:
        raise ValueError(f"not JSON at {err.value}") from None
    if end != len(text) or not isinstance(value, list):
        raise ValueError("not a JSON array")
    return value


def _log_unreadable(seq: int, type_: str, error: str | None, counts: dict[str, int]) -> None:
    # Fail loud, lose nothing: the report counts and names the rows it could not read.
    counts["unreadable"] += 1
    if error is None:
        log.error("journal row is not JSON; left out of the report", seq=seq, type=type_)
    else:
        log.error("journal row not readable for the report", seq=seq, type=type_, error=error)


def scan(
    db: sqlite3.Connection,
    period: Period,
    consumers: Iterable[tuple[str, Consumer]],
    episodes: Episodes,
    *,
    path: Path | None = None,
    pool: Executor | None = None,
    fold_rows: int | None = None,
) -> dict[str, int]:
    """Feed every event of the period, in journal order, to the consumers whose prefix matches;
    fold the alarm events into episodes, in shares of the period given to the pool (here
    without one) and joined in journal order."""
    subs = list(consumers)
    counts: dict[str, int] = {"events": 0, "unreadable": 0}
    start_text, end_text = ts_text(period.start_ts), ts_text(period.end_ts)
    lo, hi = seq_bounds(db, start_text, end_text)
    # Alarms last changed before the period that were still open at its start.
    for (body,) in db.execute(
        "SELECT body FROM events WHERE seq IN (SELECT MAX(seq) FROM events WHERE alarm_id IS NOT NULL"
        " AND seq < ? GROUP BY alarm_id)",
        (lo if lo is not None else 1 << 62,),
    ):
        rec = json.loads(body).get("data", {}).get("alarm")
        if isinstance(rec, dict):
            episodes.restore(rec)
    if lo is None or hi is None or lo > hi:
        return counts
    if path is None:
        path = Path(db.execute("PRAGMA database_list").fetchone()[2])
    step = fold_rows or FOLD_ROWS
    shares = [(a, min(a + step - 1, hi)) for a in range(lo, hi + 1, step)]
    args = [(path, a, b, start_text, end_text) for a, b in shares]
    folds: Iterable[Fold]
    if pool is None:
        folds = (fold_alarms(*x) for x in args)
    else:
        futures = [pool.submit(fold_alarms, *x) for x in args]
        folds = (f.result() for f in futures)
    # The other events, here and meanwhile. Journal order (seq), not time order: a clock stepped
    # back must not reorder events.
    rows = db.execute(
        "SELECT seq, ts, type, alarm_id, event_id, json_valid(body), body FROM events"
        " WHERE seq BETWEEN ? AND ? AND ts >= ? AND ts < ? AND type NOT GLOB 'alarm.*' ORDER BY seq",
        (lo, hi, start_text, end_text),
    )
    wants: dict[str, list[Consumer]] = {}  # per type: a month has a few dozen types, not a million
    late: list[tuple[int, str, str | None]] = []
    for seq, ts, type_, alarm_id, event_id, valid, body in rows:
        counts["events"] += 1
        if not valid:
            late.append((seq, type_, None))
            continue
        wanted = wants.get(type_)
        if wanted is None:
            wanted = wants[type_] = [fn for prefix, fn in subs if type_.startswith(prefix)]
        if not wanted:
            continue
        try:
            b = json.loads(body)
            ev = Ev(
                seq,
                parse_iso(ts),
                type_,
                alarm_id,
                b.get("actor", "?"),
                b.get("data") or {},
                event_id,
                b.get("refers_to"),
            )
            for fn in wanted:
                fn(ev)
        except (ValueError, TypeError, AttributeError) as err:
            late.append((seq, type_, str(err)))
    for fold in folds:
        counts["events"] += fold.events
        late.extend(fold.unreadable)
        episodes.join(fold.episodes)
    for seq, type_, error in sorted(late):
        _log_unreadable(seq, type_, error, counts)
    return counts
