"""A month of a busy suite (about a million journal events) reported by `suitemon report`.

Targets (issue 17): <= 30 s and <= 500 MB peak RSS per report on this 2-core machine. The journal is
written by tests/report_journal.py (the daemon's alarm engine and dose checks on a scripted clock),
then reported as HTML, CSV and PDF, each in its own process (wall time and peak RSS from wait4).
The journal schema 3 migration (the `events_ts` index) is timed on the same journal.

    .venv/bin/python bench/report_month.py --out /tmp/report_month.json [--events 1000000]
    # again on the same journal, without writing it (about 20 minutes) again:
    .venv/bin/python bench/report_month.py --out /tmp/r.json --dir /tmp/month --reuse [--formats html]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import structlog  # noqa: E402
import tomli_w  # noqa: E402
from report_journal import REPO, busy_month, example_config  # noqa: E402

from suitemon.daemon.journal import Journal  # noqa: E402

FIRST = datetime(2026, 11, 2, tzinfo=UTC)


def run_report(cfg_path: Path, fmt: str, out: Path, days: int) -> dict:
    last = datetime.fromtimestamp(FIRST.timestamp() + (days - 1) * 86400, UTC).date()
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "suitemon.daemon.cli",
            "report",
            "-c",
            str(cfg_path),
            "--from",
            FIRST.date().isoformat(),
            "--to",
            last.isoformat(),
            "--format",
            fmt,
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out_text = p.stdout.read().decode()
    err = p.stderr.read().decode()
    return {
        "format": fmt,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "exit": os.waitstatus_to_exitcode(status),
        "stdout": out_text.strip()[-300:],
        "stderr": err.strip()[-500:],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dir", type=Path, default=None, help="keep the journal here (default: a temp dir)")
    ap.add_argument("--formats", default="html,csv,pdf")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="report the journal already in --dir (written by an earlier run) instead of writing it again",
    )
    ap.add_argument("--skip-migration", action="store_true", help="do not time the schema 3 migration")
    args = ap.parse_args()
    # The engine logs every alarm: a million lines would time the terminal, not the report.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    state = work / "state"
    cfg = example_config(state)
    data = tomllib.loads((REPO / "examples" / "suite.toml").read_text())
    data["state"] = {**data.get("state", {}), "dir": str(state)}
    cfg_path = work / "suite.toml"
    cfg_path.write_text(tomli_w.dumps(data))

    journal = state / "journal.sqlite3"
    t0 = time.perf_counter()
    if args.reuse and args.dir and journal.exists():
        # Writing a month takes about 20 minutes: measure the report, not the generator, again.
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        n = db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        db.close()
        gen_s = None
    else:
        n = busy_month(cfg, FIRST.timestamp(), args.days, events_per_day=args.events // args.days)
        gen_s = round(time.perf_counter() - t0, 1)
    size_mb = (state / "journal.sqlite3").stat().st_size / 2**20

    migrate_s = None
    if not args.skip_migration:
        # The schema 3 migration on this journal: drop the index, step back, reopen.
        db = sqlite3.connect(journal)
        db.executescript("DROP INDEX events_ts; PRAGMA user_version = 2;")
        db.close()
        t0 = time.perf_counter()
        Journal(journal, chain_key=(state / "journal-chain.key").read_bytes()).close()
        migrate_s = round(time.perf_counter() - t0, 2)

    runs = [run_report(cfg_path, fmt, work / f"report.{fmt}", args.days) for fmt in args.formats.split(",")]
    met = all(r["exit"] == 0 and r["wall_s"] <= 30 and r["peak_rss_mb"] <= 500 for r in runs)
    summary = (
        f"{n} events over {args.days} days ({size_mb:.0f} MB journal): "
        + "; ".join(
            f"{r['format']} {r['wall_s']} s wall ({r['cpu_s']} s CPU), {r['peak_rss_mb']} MB peak RSS"
            for r in runs
        )
        + (f"; schema 3 index migration {migrate_s:.1f} s" if migrate_s is not None else "")
        + "; targets <= 30 s, <= 500 MB"
    )
    result = {
        "events": n,
        "days": args.days,
        "journal_mb": round(size_mb, 1),
        "generate_s": gen_s,
        "migration_v3_s": migrate_s,
        "reports": runs,
        "targets": {"wall_s": 30, "peak_rss_mb": 500},
        "meets_target": met,
        "summary": summary,
        "load_avg_at_end": os.getloadavg(),
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if all(r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
