"""Daily activity summary: administrations, activity given, checks failed, records lost.

Computed from the journal alone, so ``suitemon doses summary`` (CLI, read-only) and the
daemon (``dose.summary`` event, published retained on ``dose/summary`` once a day at
``[dispensing].summary_at`` local time, and on the ``dose_summary`` command) agree.
The day is the site's local day (``site.timezone``) of each administration time.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from suitemon.daemon.alarms import parse_iso
from suitemon.daemon.commands import CommandError
from suitemon.daemon.doses.records import dispensing_config

log = structlog.get_logger("suitemon.dose_summary")


def local_day(iso_ts: str, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(parse_iso(iso_ts), tz).date()


def summarize(journal, day: date, tz: ZoneInfo) -> dict[str, Any]:
    """The figures for one local day, from dose.administered and dose.records_lost events."""
    n, total = 0, 0.0
    by_rp: dict[str, dict[str, float]] = defaultdict(lambda: {"administrations": 0, "administered_mbq": 0.0})
    by_room: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    unchecked: Counter[str] = Counter()
    with_failures = 0
    for ev in journal.events_of_type("dose.administered"):
        d = ev.data
        if local_day(d.get("administered_at") or ev.ts, tz) != day:
            continue
        n += 1
        mbq = d.get("administered_mbq", d.get("measured_mbq")) or 0.0
        total += mbq
        rp = by_rp[f"{d.get('radiopharmaceutical') or '?'} ({d.get('radionuclide') or '?'})"]
        rp["administrations"] += 1
        rp["administered_mbq"] += mbq
        by_room[d.get("room") or "unknown"] += 1
        bad = [c["check"] for c in d.get("checks", []) if c.get("ok") is False]
        failed.update(bad)
        unchecked.update(c["check"] for c in d.get("checks", []) if c.get("ok") is None)
        with_failures += bool(bad)
    lost = sum(
        ev.data.get("count", 0)
        for ev in journal.events_of_type("dose.records_lost")
        if local_day(ev.ts, tz) == day
    )
    return {
        "date": day.isoformat(),
        "timezone": tz.key,
        "administrations": n,
        "total_administered_mbq": round(total, 1),
        "by_radiopharmaceutical": {
            k: {
                "administrations": int(v["administrations"]),
                "administered_mbq": round(v["administered_mbq"], 1),
            }
            for k, v in sorted(by_rp.items())
        },
        "by_room": dict(sorted(by_room.items())),
        "checks_failed": dict(sorted(failed.items())),
        "checks_not_evaluated": dict(sorted(unchecked.items())),
        "administrations_with_failed_checks": with_failures,
        "records_lost": lost,
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"Dose summary for {s['date']} ({s['timezone']})",
        f"  administrations        {s['administrations']}",
        f"  total administered     {s['total_administered_mbq']:.1f} MBq",
    ]
    for rp, v in s["by_radiopharmaceutical"].items():
        lines.append(f"    {rp:<22} {v['administrations']:>3} x, {v['administered_mbq']:.1f} MBq")
    lines.append(f"  by room                {', '.join(f'{r} {c}' for r, c in s['by_room'].items()) or '-'}")
    lines.append(f"  with failed checks     {s['administrations_with_failed_checks']}")
    for check, c in s["checks_failed"].items():
        lines.append(f"    {check:<22} {c}")
    if s["checks_not_evaluated"]:
        lines.append(
            "  not evaluated          " + ", ".join(f"{k} {v}" for k, v in s["checks_not_evaluated"].items())
        )
    lines.append(f"  records lost           {s['records_lost']}")
    return "\n".join(lines)


class SummaryService:
    """Publishes the summary once a day and on request (``dose_summary`` command)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.cfg = dispensing_config(ctx.cfg)
        self.tz = ZoneInfo(ctx.cfg.site.timezone)
        self.enabled = getattr(ctx.cfg, "dispensing", None) is not None or any(
            d.kind == "dispenser" and d.enabled for d in ctx.cfg.devices.values()
        )
        self._handle: asyncio.TimerHandle | None = None
        if self.enabled:
            ctx.commands.register(
                "dose_summary",
                self._command,
                description="publish (and reply with) the dose summary of a day",
            )

    def _due_times(self, now: float) -> tuple[datetime, datetime]:
        """(the latest summary time at or before now, the next one after now), local."""
        hh, mm = map(int, self.cfg.summary_at.split(":"))
        local_now = datetime.fromtimestamp(now, self.tz)
        today = local_now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if today <= local_now:
            return today, today + timedelta(days=1)
        return today - timedelta(days=1), today

    async def start(self) -> None:
        if not self.enabled:
            return
        last_due, _ = self._due_times(time.time())
        journal = self.ctx.recorder.journal
        done = {
            ev.data.get("date")
            for ev in journal.events_of_type("dose.summary")
            if ev.data.get("trigger") == "daily"
        }
        has_records = next(iter(journal.events_of_type("dose.administered")), None) is not None
        if has_records and last_due.date().isoformat() not in done:
            # The daemon was down at the last summary time: publish that day's now.
            self.publish(last_due.date(), "daily")
        self._schedule()

    def _schedule(self) -> None:
        _, nxt = self._due_times(time.time())
        # A wall-clock delay recomputed after each run, so DST changes and clock steps are absorbed.
        self._handle = asyncio.get_running_loop().call_later(
            max(1.0, nxt.timestamp() - time.time()), self._due
        )

    def _due(self) -> None:
        last_due, _ = self._due_times(time.time())
        try:
            self.publish(last_due.date(), "daily")
        except Exception:
            log.exception("daily dose summary failed")
        self._schedule()

    async def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def publish(self, day: date, trigger: str, actor: str = "system") -> dict[str, Any]:
        s = summarize(self.ctx.recorder.journal, day, self.tz)
        self.ctx.recorder.record("dose.summary", {**s, "trigger": trigger}, actor=actor)
        log.info(
            "dose summary published", date=s["date"], administrations=s["administrations"], trigger=trigger
        )
        return s

    def _command(self, actor: str, body: dict[str, Any]) -> dict[str, Any]:
        day = body.get("date")
        if day is None:
            d = datetime.now(self.tz).date()
        else:
            try:
                d = date.fromisoformat(day) if isinstance(day, str) else None
            except ValueError:
                d = None
            if d is None:
                raise CommandError("date must be YYYY-MM-DD")
        return self.publish(d, "request", actor)


def factory(ctx) -> SummaryService:
    return SummaryService(ctx)


# -- CLI: suitemon doses summary -c FILE [--date YYYY-MM-DD] [--json] ---------------------------
def cmd_doses(args) -> int:
    from suitemon.daemon.cli_support import EXIT_FAIL, EXIT_OK, load_or_exit, open_journal_or_say_why

    cfg = load_or_exit(args.config)
    path = cfg.state.dir / "journal.sqlite3"
    tz = ZoneInfo(cfg.site.timezone)
    try:
        day = date.fromisoformat(args.date) if args.date else datetime.now(tz).date()
    except ValueError:
        print(f"--date {args.date!r}: expected YYYY-MM-DD", file=sys.stderr)
        return EXIT_FAIL
    j = open_journal_or_say_why(path)
    if j is None:
        return EXIT_FAIL
    try:
        s = summarize(j, day, tz)
    finally:
        j.close()
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return EXIT_OK


def add_parser(sub) -> None:
    from suitemon.daemon.cli_support import add_config_option

    p = sub.add_parser("doses", help="dose records: a day's activity summary")
    dsub = p.add_subparsers(dest="doses_command", required=True)
    s = dsub.add_parser("summary", help="administrations, total activity and failed checks of one day")
    add_config_option(s)
    s.add_argument("--date", help="YYYY-MM-DD, local to site.timezone (default: today)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=cmd_doses)


__all__ = ["SummaryService", "add_parser", "factory", "format_summary", "local_day", "summarize"]
