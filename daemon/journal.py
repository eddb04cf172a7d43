"""The journal: an append-only, hash-chained SQLite event log that is also the MQTT outbox.

Every event is committed here before anything publishes it (store-and-forward).
Rows are never updated or deleted (triggers refuse it); delivery progress lives in a
separate table so the chained rows stay untouched. Each row's hash covers the row's
canonical text and the previous row's hash, so an edit anywhere breaks the chain
from that row on and ``verify`` names the first bad row.

A plain hash can be recomputed by whoever edits the file, so the chain is *keyed*
(HMAC-SHA256 with a key kept outside the database) from ``keyed_from`` on. Journals
written before that have a plain SHA-256 segment first; the daemon starts the keyed
segment with a ``journal.chain_keyed`` event naming the old head. Truncation (deleting
the newest rows) leaves a valid chain: only a witness of the head catches it, see
daemon/checkpoints.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3
GENESIS = "0" * 64
CHAIN_KEYED = "journal.chain_keyed"

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            ts TEXT NOT NULL,
            type TEXT NOT NULL,
            alarm_id TEXT,
            body TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX events_alarm ON events(alarm_id, seq) WHERE alarm_id IS NOT NULL",
        "CREATE INDEX events_type ON events(type, seq)",
        """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'journal is append-only: record a correction instead'); END""",
        """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END""",
        "CREATE TABLE delivery (id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL)",
        "INSERT INTO delivery (id, upto) VALUES (1, 0)",
    ],
    # keyed_from: first seq whose hash is an HMAC; NULL while the whole chain is plain SHA-256.
    2: [
        "CREATE TABLE chain (id INTEGER PRIMARY KEY CHECK (id = 1), keyed_from INTEGER)",
        "INSERT INTO chain (id, keyed_from) VALUES (1, NULL)",
    ],
    # Reports select a period by time (suitemon report): without it a month of a year-old
    # journal is a full scan. Building it on an existing million-row journal takes a few seconds.
    3: [
        "CREATE INDEX events_ts ON events(ts)",
    ],
}


NOT_KEYED = (
    "the chain is not keyed although a chain key is given (downgraded, or never opened by a keyed suitemon)"
)


class JournalError(Exception):
    pass


class JournalCorrupt(JournalError):
    pass


@dataclass(frozen=True)
class Event:
    seq: int
    event_id: str
    ts: str
    type: str
    alarm_id: str | None
    actor: str
    data: dict[str, Any]
    refers_to: str | None = None

    def envelope(self, site: str) -> dict[str, Any]:
        env = {
            "event_id": self.event_id,
            "seq": self.seq,
            "ts": self.ts,
            "site": site,
            "type": self.type,
            "actor": self.actor,
            "alarm_id": self.alarm_id,
            "data": self.data,
        }
        if self.refers_to is not None:
            env["refers_to"] = self.refers_to
        return env


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    first_bad_seq: int | None = None
    reason: str = ""
    head_seq: int = 0
    head_hash: str = GENESIS
    keyed_from: int | None = None


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# What json.dumps(ensure_ascii=False) uses for each string (the C escaper): the chain's row text
# is built from it directly, without a new JSONEncoder per row (verification hashes every row).
_encode_str = json.encoder.encode_basestring


def _row_text(
    prev_hash: str, seq: int, event_id: str, ts: str, type_: str, alarm_id: str | None, body: str
) -> bytes:
    """Exactly ``_canonical([prev_hash, seq, ...])`` (tests/test_journal_segments.py compares them)."""
    e = _encode_str
    if (
        type(seq) is int
        and type(prev_hash) is str
        and type(event_id) is str
        and type(ts) is str
        and type(type_) is str
        and type(body) is str
        and (alarm_id is None or type(alarm_id) is str)
    ):
        aid = "null" if alarm_id is None else e(alarm_id)
        return f"[{e(prev_hash)},{seq},{e(event_id)},{e(ts)},{e(type_)},{aid},{e(body)}]".encode()
    # Anything else (a value an editor stored with another type) takes the general encoder.
    return _canonical([prev_hash, seq, event_id, ts, type_, alarm_id, body]).encode("utf-8")


def _row_hash(
    prev_hash: str,
    seq: int,
    event_id: str,
    ts: str,
    type_: str,
    alarm_id: str | None,
    body: str,
    key: bytes | None = None,
) -> str:
    text = _row_text(prev_hash, seq, event_id, ts, type_, alarm_id, body)
    if key is None:
        return hashlib.sha256(text).hexdigest()
    return hmac.digest(key, text, "sha256").hex()


@dataclass(frozen=True)
class ChainSpan:
    """What a walk over consecutive rows found: enough to join it to the span before it."""

    rows: int  # rows walked, up to and including a bad one
    first_seq: int | None = None
    first_prev: str | None = None  # the prev_hash the first row stores (checked where spans join)
    last_seq: int | None = None
    last_hash: str | None = None
    bad_seq: int | None = None
    reason: str = ""


def _row_problem(
    seq: int,
    event_id: str,
    ts: str,
    type_: str,
    alarm_id: str | None,
    body: str,
    prev: str,
    h: str,
    key: bytes | None,
    keyed_from: int | None,
) -> str | None:
    keyed = keyed_from is not None and seq >= keyed_from
    if keyed and key is None:
        return f"rows from seq {keyed_from} on are keyed: the chain key is needed to verify them"
    if not keyed and type_ == CHAIN_KEYED:
        return "a chain_keyed marker in the plain segment: keyed_from was moved"
    if keyed and seq == keyed_from and seq > 1 and type_ != CHAIN_KEYED:
        return "the keyed segment does not start with its chain_keyed marker"
    try:
        if _row_hash(prev, seq, event_id, ts, type_, alarm_id, body, key if keyed else None) == h:
            return None
    except (TypeError, ValueError) as err:  # e.g. a BLOB stored where text belongs
        return f"row cannot be hashed: {err}"
    return "row content does not match its hash" + (
        " (keyed: rewritten without the chain key?)" if keyed else ""
    )


ChainRow = tuple[Any, Any, Any, Any, Any, Any, Any, Any]
CHAIN_COLS = "seq, event_id, ts, type, alarm_id, body, prev_hash, hash"


def walk_chain(
    rows: Iterable[ChainRow],
    *,
    key: bytes | None,
    keyed_from: int | None,
    prev: str | None = None,
    expected_seq: int | None = None,
) -> ChainSpan:
    """Check consecutive rows (seq order). ``prev``/``expected_seq`` None: a segment in the middle,
    which takes its first row's seq and prev_hash as given; whoever joins the segments checks them
    against the segment before (daemon/journal_segments.py). The checks are those of ``verify``."""
    n, first_seq, first_prev = 0, None, None
    last_hash, next_seq = prev or "", expected_seq or 0
    for seq, event_id, ts, type_, alarm_id, body, prev_hash, h in rows:
        n += 1
        if first_seq is None:
            first_seq, first_prev = seq, prev_hash
            last_hash = prev_hash if prev is None else prev
            next_seq = seq if expected_seq is None else expected_seq
        if seq != next_seq:
            reason: str | None = f"gap: expected seq {next_seq}, found {seq}"
        elif prev_hash != last_hash:
            reason = "prev_hash does not match the previous row"
        else:
            reason = _row_problem(seq, event_id, ts, type_, alarm_id, body, last_hash, h, key, keyed_from)
        if reason is not None:
            return ChainSpan(n, first_seq, first_prev, None, None, seq, reason)
        last_hash, next_seq = h, seq + 1
    if n == 0:
        return ChainSpan(0)
    return ChainSpan(n, first_seq, first_prev, next_seq - 1, last_hash)


class Journal:
    """Single-writer journal. Not thread-safe: the daemon's event loop owns it."""

    def __init__(self, path: str | Path, synchronous: str = "full", *, chain_key: bytes | None = None):
        self.path = Path(path)
        self._key = chain_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self._check_integrity()
        row = self._db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        self._last_seq: int
        self._last_hash: str
        self._last_seq, self._last_hash = (row[0], row[1]) if row else (0, GENESIS)
        self._keyed_from: int | None = self._db.execute(
            "SELECT keyed_from FROM chain WHERE id = 1"
        ).fetchone()[0]
        self._in_tx = False

    # -- schema ---------------------------------------------------------
    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(f"journal schema {version} is newer than this suitemon ({SCHEMA_VERSION})")
        for v in range(version + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _MIGRATIONS[v]:
                    self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version={v}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _check_integrity(self) -> None:
        result = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise JournalCorrupt(f"sqlite integrity check failed: {result}")

    # -- the keyed chain ------------------------------------------------
    @property
    def keyed_from(self) -> int | None:
        return self._keyed_from

    def _key_for(self, seq: int) -> bytes | None:
        return self._key if self._keyed_from is not None and seq >= self._keyed_from else None

    def start_keyed_segment(self) -> tuple[int, str] | None:
        """Key the chain from the next row on (daemon start). Returns the plain head it closes, if any.

        An empty journal is keyed from seq 1 silently; one with plain rows gets a
        ``journal.chain_keyed`` event as the first keyed row, naming the old head, so the
        boundary itself is under the key.
        """
        if self._keyed_from is not None:
            return None
        if self._key is None:
            raise JournalError("no chain key: cannot key the journal")
        old = (self._last_seq, self._last_hash)
        self.commit()
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            self._keyed_from = self._last_seq + 1
            self._db.execute("UPDATE chain SET keyed_from = ? WHERE id = 1", (self._keyed_from,))
            if old[0] > 0:
                self.append(
                    CHAIN_KEYED,
                    {"previous_head": {"seq": old[0], "hash": old[1]}, "algorithm": "hmac-sha256"},
                )
            self.commit()
        except BaseException:
            self.rollback()
            self._keyed_from = self._db.execute("SELECT keyed_from FROM chain WHERE id = 1").fetchone()[0]
            raise
        return old if old[0] > 0 else None

    def head(self, upto: int | None = None) -> tuple[int, str]:
        """(seq, hash) of the newest row, or of row ``upto`` (the committed head)."""
        if upto is None:
            return self._last_seq, self._last_hash
        if upto == 0:
            return 0, GENESIS
        row = self._db.execute("SELECT seq, hash FROM events WHERE seq = ?", (upto,)).fetchone()
        if row is None:
            raise JournalError(f"no row {upto}")
        return row[0], row[1]

    # -- writing --------------------------------------------------------
    def append(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        alarm_id: str | None = None,
        actor: str = "system",
        refers_to: str | None = None,
        ts: str | None = None,
        event_id: str | None = None,
    ) -> Event:
        """Add one event to the open transaction (started on demand). Call commit() to make it durable."""
        if self._keyed_from is not None and self._key is None:
            raise JournalError("this journal's chain is keyed: it takes new rows only with the chain key")
        if not self._in_tx:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
        seq = self._last_seq + 1
        event = Event(
            seq=seq,
            event_id=event_id or str(uuid.uuid4()),
            ts=ts or utc_now_iso(),
            type=type_,
            alarm_id=alarm_id,
            actor=actor,
            data=data,
            refers_to=refers_to,
        )
        body = _canonical({"actor": actor, "data": data, "refers_to": refers_to})
        h = _row_hash(
            self._last_hash, seq, event.event_id, event.ts, type_, alarm_id, body, self._key_for(seq)
        )
        self._db.execute(
            "INSERT INTO events (seq, event_id, ts, type, alarm_id, body, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, event.event_id, event.ts, type_, alarm_id, body, self._last_hash, h),
        )
        self._last_seq, self._last_hash = seq, h
        return event

    def commit(self) -> None:
        if self._in_tx:
            try:
                self._db.execute("COMMIT")
            finally:
                self._in_tx = False

    def rollback(self) -> None:
        """Drop uncommitted events (e.g. after a disk-full error) and resync the chain head."""
        if self._in_tx:
            try:
                self._db.execute("ROLLBACK")
            finally:
                self._in_tx = False
        row = self._db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        self._last_seq, self._last_hash = (row[0], row[1]) if row else (0, GENESIS)

    def set_delivered(self, upto: int) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
        self._db.execute("UPDATE delivery SET upto = ? WHERE id = 1 AND upto < ?", (upto, upto))

    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    # -- reading --------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return self._last_seq

    def delivered_upto(self) -> int:
        upto: int = self._db.execute("SELECT upto FROM delivery WHERE id = 1").fetchone()[0]
        return upto

    @staticmethod
    def _event(row: tuple[Any, ...]) -> Event:
        seq, event_id, ts, type_, alarm_id, body = row
        b = json.loads(body)
        return Event(
            seq=seq,
            event_id=event_id,
            ts=ts,
            type=type_,
            alarm_id=alarm_id,
            actor=b["actor"],
            data=b["data"],
            refers_to=b.get("refers_to"),
        )

    _COLS = "seq, event_id, ts, type, alarm_id, body"

    def events_after(self, seq: int, limit: int = 500) -> list[Event]:
        rows = self._db.execute(
            f"SELECT {self._COLS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [self._event(r) for r in rows]

    def get(self, event_id: str) -> Event | None:
        row = self._db.execute(f"SELECT {self._COLS} FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return self._event(row) if row else None

    def latest_per_alarm(self) -> Iterator[Event]:
        """The newest event of every alarm: enough to rebuild the alarm table at start."""
        rows = self._db.execute(
            f"SELECT {self._COLS} FROM events WHERE seq IN"
            " (SELECT MAX(seq) FROM events WHERE alarm_id IS NOT NULL GROUP BY alarm_id) ORDER BY seq"
        )
        for r in rows:
            yield self._event(r)

    def events_of_type(self, prefix: str, since_seq: int = 0) -> Iterator[Event]:
        rows = self._db.execute(
            f"SELECT {self._COLS} FROM events WHERE type >= ? AND type < ? AND seq > ? ORDER BY seq",
            (prefix, prefix + "\uffff", since_seq),
        )
        for r in rows:
            yield self._event(r)

    def first_seq_since(self, ts: str) -> int:
        """The first seq whose ts is >= ts (last_seq + 1 if none): a binary search, no ts index needed."""
        lo, hi = 1, self._last_seq + 1
        while lo < hi:
            mid = (lo + hi) // 2
            row = self._db.execute("SELECT ts FROM events WHERE seq = ?", (mid,)).fetchone()
            if row is not None and row[0] < ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def count(self) -> int:
        n: int = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return n

    def verify(self) -> VerifyResult:
        """Walk the chain. With a chain key, a journal that is not keyed fails: either it was
        downgraded (keyed_from cleared and the chain recomputed in plain SHA-256) or no daemon
        of this version has opened it yet."""
        keyed_from = self._db.execute("SELECT keyed_from FROM chain WHERE id = 1").fetchone()[0]
        if self._key is not None and keyed_from is None:
            return VerifyResult(False, 0, None, NOT_KEYED, keyed_from=keyed_from)
        cur = self._db.execute(f"SELECT {CHAIN_COLS} FROM events ORDER BY seq")
        span = walk_chain(cur, key=self._key, keyed_from=keyed_from, prev=GENESIS, expected_seq=1)
        if span.bad_seq is not None:
            return VerifyResult(False, span.rows, span.bad_seq, span.reason, keyed_from=keyed_from)
        return VerifyResult(
            True,
            span.rows,
            head_seq=span.last_seq or 0,
            head_hash=span.last_hash or GENESIS,
            keyed_from=keyed_from,
        )

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()


def open_journal(
    state_dir: str | Path, synchronous: str = "full", *, chain_key: bytes | None = None
) -> Journal:
    return Journal(Path(state_dir) / "journal.sqlite3", synchronous, chain_key=chain_key)
