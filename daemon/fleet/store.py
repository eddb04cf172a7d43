"""PostgreSQL side of the collector: parse an event message, insert a batch once, record rejects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import psycopg

from suitemon.daemon.fleet.config import FleetDatabase, read_secret
from suitemon.daemon.fleet.migrate import migrate


class NotAnEvent(ValueError):
    pass


@dataclass(frozen=True)
class Row:
    site: str
    event_id: str
    seq: int
    ts: datetime
    type: str
    actor: str | None
    alarm_id: str | None
    doc: str  # the event as received (JSON text): PostgreSQL takes its data from it, no re-encoding


def parse_event(topic: str, payload: bytes, base: str = "suitemon") -> Row:
    """One event message -> a row; NotAnEvent says why not. The topic names the site: the
    cluster lets a site's bridge publish only under its own tree, so a payload that claims
    another site is refused rather than believed."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != base or parts[2] != "event":
        raise NotAnEvent(f"not an event topic: {topic}")
    site = parts[1]
    try:
        text = payload.decode("utf-8")
        e = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as ex:
        raise NotAnEvent(f"not JSON: {ex}") from None
    if "\\u0000" in text:
        raise NotAnEvent("contains a NUL character (\\u0000), which PostgreSQL's jsonb cannot hold")
    if not isinstance(e, dict):
        raise NotAnEvent("not a JSON object")
    if e.get("site") != site:
        raise NotAnEvent(f"payload site {e.get('site')!r} is not the topic's site {site!r}")
    eid, seq, ts, typ = e.get("event_id"), e.get("seq"), e.get("ts"), e.get("type")
    if not isinstance(eid, str) or not eid:
        raise NotAnEvent("event_id missing")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise NotAnEvent("seq missing or not a non-negative integer")
    if not isinstance(typ, str) or not typ:
        raise NotAnEvent("type missing")
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise NotAnEvent(f"ts {ts!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise NotAnEvent(f"ts {ts!r} has no time zone")
    if not isinstance(e.get("data", {}), dict):
        raise NotAnEvent("data is not a JSON object")
    alarm_id = e.get("alarm_id")
    return Row(
        site,
        eid,
        seq,
        when,
        typ,
        e.get("actor") if isinstance(e.get("actor"), str) else None,
        alarm_id if isinstance(alarm_id, str) else None,
        text,
    )


# A batch is copied into a per-connection staging table (COPY is several times faster than row
# inserts), then moved in one statement that skips what is already stored.
STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS fleet_stage (site text, event_id text, seq bigint, ts timestamptz,"
    " type text, actor text, alarm_id text, doc jsonb) ON COMMIT DELETE ROWS"
)
COPY = "COPY fleet_stage (site, event_id, seq, ts, type, actor, alarm_id, doc) FROM STDIN"
MOVE = (
    "INSERT INTO fleet_event (site, event_id, seq, ts, type, actor, alarm_id, data, collector)"
    " SELECT site, event_id, seq, ts, type, actor, alarm_id, coalesce(doc->'data', '{}'::jsonb), %s"
    " FROM fleet_stage ON CONFLICT ON CONSTRAINT fleet_event_once DO NOTHING"
)
REJECT = "INSERT INTO fleet_rejected (topic, reason, payload, collector) VALUES (%s, %s, %s, %s)"


def connect(db: FleetDatabase, autocommit: bool = False) -> psycopg.Connection:
    kw = {"connect_timeout": db.connect_timeout_s, "autocommit": autocommit}
    pw = read_secret(db.password_file)
    if pw is not None:
        kw["password"] = pw
    return psycopg.connect(db.dsn, **kw)


class Store:
    """One connection, opened lazily and dropped on any error (the caller retries the batch)."""

    def __init__(self, db: FleetDatabase, collector: str):
        self.db = db
        self.collector = collector
        self.conn: psycopg.Connection | None = None

    def _conn(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            conn = connect(self.db)
            migrate(conn)
            self.conn = conn
        return self.conn

    def write(self, rows: list[Row], rejects: list[tuple[str, str, bytes]]) -> int:
        """Store in one transaction; return how many rows were new. Raises psycopg.Error when the
        database is unavailable. A row PostgreSQL refuses (psycopg.DataError) is moved to the
        rejects: never retried forever, never dropped."""
        try:
            return self._write(rows, rejects)
        except psycopg.DataError:
            self.close()
        inserted, rejects = 0, list(rejects)
        for r in rows:  # find the refused row: one transaction each, only on this rare path
            try:
                inserted += self._write([r], [])
            except psycopg.DataError as e:
                self.close()
                rejects.append(
                    (f"suitemon/{r.site}/event", f"refused by PostgreSQL: {e}".strip()[:500], r.doc.encode())
                )
        self._write([], rejects)
        return inserted

    def _write(self, rows: list[Row], rejects: list[tuple[str, str, bytes]]) -> int:
        try:
            conn = self._conn()
            with conn.transaction():
                inserted = 0
                with conn.cursor() as cur:
                    if rows:
                        cur.execute(STAGE)
                        with cur.copy(COPY) as copy:
                            for r in rows:
                                copy.write_row(
                                    (r.site, r.event_id, r.seq, r.ts, r.type, r.actor, r.alarm_id, r.doc)
                                )
                        cur.execute(MOVE, (self.collector,))
                        inserted = max(cur.rowcount, 0)
                    if rejects:
                        cur.executemany(REJECT, [(t, why, p, self.collector) for t, why, p in rejects])
            return inserted
        except psycopg.DataError:
            raise
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None
