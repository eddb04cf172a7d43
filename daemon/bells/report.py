"""``suitemon bells report -c FILE``: each room's last bell-test pass, from the journal.

Reads the journal the daemon writes (safe while it runs: SQLite WAL, read only here).
A room's last pass is the oldest of its buttons' last passes (every button must pass);
a room is OVERDUE when that is older than the device's ``test_interval_s``.
"""

from __future__ import annotations

import json
import time

from suitemon.daemon.alarms import iso
from suitemon.daemon.bells.service import KIND
from suitemon.daemon.bells.weekly import last_passes, monitoring_since, room_last_pass


def add_parser(sub) -> None:
    from suitemon.daemon.cli_support import add_config_option

    s = sub.add_parser("bells", help="call bells: weekly bell-test report")
    s.add_argument("action", choices=["report"], help="report: last pass of every button, overdue rooms")
    add_config_option(s)
    s.add_argument("--json", action="store_true", help="one JSON object per room")
    s.set_defaults(fn=cmd_bells)


def _when(t: float | None) -> str:
    return iso(t)[:19].replace("T", " ") + "Z" if t is not None else "never"


def report_rows(cfg, journal, now: float) -> list[dict]:
    rows = []
    since = monitoring_since(journal)
    for did, dev in cfg.devices.items():
        if dev.kind != KIND:
            continue
        passes = last_passes(journal, did)
        for room, r in dev.rooms.items():
            buttons = list(r.inputs())
            last = room_last_pass(passes, room, buttons)
            ref = last if last is not None else (since if since is not None else now)
            overdue = now - ref > dev.test_interval_s
            rows.append(
                {
                    "device": did,
                    "room": room,
                    "name": cfg.areas[room].name if room in cfg.areas else room,
                    "buttons": {b: iso(passes[(room, b)]) if (room, b) in passes else None for b in buttons},
                    "last_pass": iso(last) if last is not None else None,
                    "interval_s": dev.test_interval_s,
                    "due": iso(ref + dev.test_interval_s),
                    "overdue": overdue,
                }
            )
    return rows


def cmd_bells(args) -> int:
    from suitemon.daemon.cli_support import EXIT_FAIL, EXIT_OK, load_or_exit, open_journal_or_say_why

    cfg = load_or_exit(args.config)
    path = cfg.state.dir / "journal.sqlite3"
    journal = open_journal_or_say_why(path)
    if journal is None:
        return EXIT_FAIL
    try:
        rows = report_rows(cfg, journal, time.time())
    finally:
        journal.close()
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print("no call-bell devices in this config")
        return EXIT_OK
    print(f"Call-bell tests from {path}")
    head = f"{'device':<10} {'room':<10} {'name':<28} {'call':<21} {'emergency':<21} {'cancel':<21} {'last pass':<21} status"
    print(head)
    print("-" * len(head))
    for row in rows:
        b = row["buttons"]
        cells = [_when(_t(b.get(k))) if k in b else "-" for k in ("call", "emergency", "cancel")]
        status = "OVERDUE" if row["overdue"] else f"ok, due {row['due'][:10]}"
        print(
            f"{row['device']:<10} {row['room']:<10} {row['name'][:28]:<28} {cells[0]:<21} {cells[1]:<21} "
            f"{cells[2]:<21} {_when(_t(row['last_pass'])):<21} {status}"
        )
    return EXIT_OK


def _t(s: str | None) -> float | None:
    from suitemon.daemon.alarms import parse_iso

    return parse_iso(s) if s else None
