"""Verify the journal's chain in segments, in parallel processes (issue 17: a month in 30 s).

Each row stores its predecessor's hash, so a run of consecutive rows can be checked on its own
(every row's hash recomputed from its content and the prev_hash it stores). Joining the runs in
seq order then checks, at each boundary, what a single walk checks there: the seq follows the
previous run's last one and the stored prev_hash equals that run's last (verified) hash. The
result is the one ``Journal.verify`` gives, first bad row and reason included
(tests/test_journal_segments.py tampers in the middle of a segment and at a boundary).

Rows appended while this runs are not looked at: the head is fixed when the walk starts, as a
single walk's read transaction fixes it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

from suitemon.daemon.journal import (
    CHAIN_COLS,
    GENESIS,
    NOT_KEYED,
    ChainSpan,
    VerifyResult,
    walk_chain,
)

# Large enough that a segment's setup (a connection, a query) is noise, small enough that two
# workers sharing two cores with the report's own pass stay busy to the end.
SEGMENT_ROWS = 100_000


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def walk_segment(path: Path, key: bytes | None, keyed_from: int | None, lo: int, hi: int) -> ChainSpan:
    """Rows lo..hi (by seq), in a process of their own."""
    db = _connect(path)
    try:
        cur = db.execute(f"SELECT {CHAIN_COLS} FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq", (lo, hi))
        return walk_chain(cur, key=key, keyed_from=keyed_from)
    finally:
        db.close()


def plan(path: Path, segment_rows: int) -> tuple[int | None, list[tuple[int, int]]]:
    """keyed_from and the seq ranges that cover every row up to the current head."""
    db = _connect(path)
    try:
        keyed_from = db.execute("SELECT keyed_from FROM chain WHERE id = 1").fetchone()[0]
        lo, hi = db.execute("SELECT MIN(seq), MAX(seq) FROM events").fetchone()
    finally:
        db.close()
    if lo is None:
        return keyed_from, []
    # From min(seq), not 1: rows below 1 (an editor's) must be walked too, to be reported.
    return keyed_from, [(a, min(a + segment_rows - 1, hi)) for a in range(lo, hi + 1, segment_rows)]


def join(spans: Sequence[ChainSpan], keyed_from: int | None) -> VerifyResult:
    """The spans, in seq order, as one walk from the genesis would report them."""
    n, prev, expected = 0, GENESIS, 1
    for span in spans:
        if span.rows == 0 or span.first_seq is None:
            continue  # no rows in this range: the next span's first seq shows the gap
        if span.first_seq != expected:
            return VerifyResult(
                False,
                n + 1,
                span.first_seq,
                f"gap: expected seq {expected}, found {span.first_seq}",
                keyed_from=keyed_from,
            )
        if span.first_prev != prev:
            return VerifyResult(
                False,
                n + 1,
                span.first_seq,
                "prev_hash does not match the previous row",
                keyed_from=keyed_from,
            )
        if span.bad_seq is not None:
            return VerifyResult(False, n + span.rows, span.bad_seq, span.reason, keyed_from=keyed_from)
        n += span.rows
        assert span.last_seq is not None and span.last_hash is not None
        prev, expected = span.last_hash, span.last_seq + 1
    return VerifyResult(True, n, head_seq=expected - 1, head_hash=prev, keyed_from=keyed_from)


def verify_segments(
    path: Path, key: bytes | None, pool: Executor | None = None, *, segment_rows: int | None = None
) -> VerifyResult:
    """``Journal.verify`` over the journal at path, the segments walked by pool (in this process
    without one). The journal must already be open(ed) once by ``Journal`` (schema, integrity)."""
    keyed_from, ranges = plan(path, segment_rows or SEGMENT_ROWS)
    if key is not None and keyed_from is None:
        return VerifyResult(False, 0, None, NOT_KEYED, keyed_from=keyed_from)
    if pool is None:
        spans = [walk_segment(path, key, keyed_from, lo, hi) for lo, hi in ranges]
    else:
        futures = [pool.submit(walk_segment, path, key, keyed_from, lo, hi) for lo, hi in ranges]
        spans = [f.result() for f in futures]
    return join(spans, keyed_from)
