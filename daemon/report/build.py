"""Build a report: verify the journal's chain, scan the period once, let each section make its tables."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from suitemon.daemon import __version__
from suitemon.daemon.journal import GENESIS, Journal, JournalError
from suitemon.daemon.journal_segments import verify_segments
from suitemon.daemon.report import alarms, bells, devices, doses, power, radiation
from suitemon.daemon.report.context import BuildContext
from suitemon.daemon.report.model import Section
from suitemon.daemon.report.period import Period
from suitemon.daemon.report.source import Episodes, connect_read_only, scan, ts_text

log = structlog.get_logger("suitemon.report")


@dataclass
class Verification:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    keyed_from: int | None
    detail: str


@dataclass
class Report:
    site_id: str
    site_name: str
    period: Period
    sections: list[Section]
    verification: Verification
    journal_path: str
    events_in_period: int
    unreadable_rows: int
    generated_at: float = field(default_factory=time.time)
    version: str = __version__

    def section(self, sid: str) -> Section:
        for s in self.sections:
            if s.id == sid:
                return s
        raise KeyError(sid)

    def summary(self) -> dict[str, Any]:
        """The headline figures, e.g. for a monthly summary message."""
        return {
            "site": self.site_id,
            "from": self.period.first_day.isoformat(),
            "to": self.period.last_day.isoformat(),
            "figures": {s.id: s.figures_of_note for s in self.sections},
            "journal": {
                "verified": self.verification.ok,
                "head_seq": self.verification.head_seq,
                "head_hash": self.verification.head_hash,
            },
        }


def open_journal(path: Path, chain_key: bytes | None) -> str | None:
    """Open the journal once as the daemon does (schema migration, SQLite integrity check), in a
    worker; None when it opened, else why not."""
    try:
        Journal(path, chain_key=chain_key).close()
    except (JournalError, OSError, Exception) as err:
        return f"cannot open the journal: {err}"
    return None


def verify(path: Path, chain_key: bytes | None, pool: Executor | None = None, opened=None) -> Verification:
    """The chain walk, its segments spread over the pool (daemon/journal_segments.py)."""
    problem = opened.result() if opened is not None else open_journal(path, chain_key)
    if problem:
        return Verification(False, 0, 0, "", None, problem)
    try:
        r = verify_segments(path, chain_key, pool)
    except (sqlite3.Error, OSError) as err:
        return Verification(False, 0, 0, "", None, f"cannot read the journal: {err}")
    if r.ok:
        keyed = (
            f"keyed (HMAC-SHA256) from seq {r.keyed_from}"
            if r.keyed_from is not None
            else "plain SHA-256, not keyed"
        )
        return Verification(
            True,
            r.rows,
            r.head_seq,
            r.head_hash,
            r.keyed_from,
            f"hash chain intact over {r.rows} events, {keyed}",
        )
    seq, h = _head(path)
    return Verification(False, r.rows, seq, h, r.keyed_from, f"FAILED at seq {r.first_bad_seq}: {r.reason}")


def _head(path: Path) -> tuple[int, str]:
    db = connect_read_only(path)
    try:
        row = db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    finally:
        db.close()
    return (row[0], row[1]) if row else (0, GENESIS)


def build_report(
    cfg,
    period: Period,
    *,
    journal_path: Path | None = None,
    chain_key: bytes | None = None,
    workers: int | None = None,
) -> Report:
    path = Path(journal_path) if journal_path else cfg.state.dir / "journal.sqlite3"
    # The chain walk (an HMAC per row) and the report's pass are independent reads of the same
    # file, and both split into segments of rows (the chain joined at the segment boundaries, the
    # alarm fold joined in journal order): worker processes take them in turn, so every core works
    # until both are done. A worker opens the journal first (and migrates it, if an index is
    # missing) before the read-only pass starts.
    workers = workers or max(2, os.cpu_count() or 2)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        opened = pool.submit(open_journal, path, chain_key)
        _wait_opened(path, opened)
        with ThreadPoolExecutor(max_workers=1) as waiter:  # it only hands out segments and waits
            pending = waiter.submit(verify, path, chain_key, pool, opened)
            report = _build(cfg, period, path, pool)
            ver = pending.result()
    if not ver.ok:
        log.error("journal verification failed; the report says so in its footer", detail=ver.detail)
    report.verification = ver
    return report


def _wait_opened(path: Path, verifying, timeout: float = 120.0) -> None:
    """Until the journal has its time index (schema 3): the verifier's open adds it if missing
    (or could not: then the pass scans without it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not verifying.done():
        try:
            db = connect_read_only(path)
            try:
                if db.execute("PRAGMA user_version").fetchone()[0] >= 3:
                    return
            finally:
                db.close()
        except sqlite3.Error:
            pass
        time.sleep(0.05)


def _build(cfg, period: Period, path: Path, pool: Executor | None = None) -> Report:
    collectors = {
        "bells": bells.Collector(),
        "doses": doses.Collector(),
        "radiation": radiation.Collector(),
        "power": power.Collector(),
        "devices": devices.Collector(),
    }
    episodes = Episodes()
    db = connect_read_only(path)
    try:
        before = db.execute(
            "SELECT type FROM events WHERE type IN ('daemon.started', 'daemon.stopped') AND ts < ?"
            " ORDER BY seq DESC LIMIT 1",
            (ts_text(period.start_ts),),
        ).fetchone()
        collectors["devices"].running_at_start = before is not None and before[0] == "daemon.started"
        subs = [s for c in collectors.values() for s in c.subscriptions()]
        counts = scan(db, period, subs, episodes, path=path, pool=pool)
    finally:
        db.close()
    ctx = BuildContext(cfg, period, episodes)
    sections = [
        alarms.build(ctx),
        collectors["bells"].build(ctx),
        collectors["doses"].build(ctx),
        collectors["radiation"].build(ctx),
        collectors["power"].build(ctx),
        collectors["devices"].build(ctx),
    ]
    pending = Verification(False, 0, 0, "", None, "not verified")
    return Report(
        cfg.site.id,
        cfg.site.name,
        period,
        sections,
        pending,
        str(path),
        counts["events"],
        counts["unreadable"],
    )


def summary_json(report: Report) -> str:
    return json.dumps(report.summary(), ensure_ascii=False, sort_keys=True)
