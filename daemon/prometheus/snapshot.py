"""What a scrape reports, read in one go on the event loop (the daemon's state is the loop's alone)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suitemon.daemon.alarms import OPEN_STATES, PRIORITY_RANK

DEVICE_COUNTER = "device."


@dataclass
class DeviceFigures:
    kind: str
    age_s: float
    polls: int
    failures: int
    comm_lost: bool


@dataclass
class Snapshot:
    site: str
    version: str
    devices: dict[str, DeviceFigures] = field(default_factory=dict)
    alarms: dict[tuple[str, str], int] = field(default_factory=dict)  # (priority, state) -> open alarms
    backlog: int = 0
    journal_events: int = 0
    journal_bytes: int = 0
    journal_fault: bool = False
    counters: dict[str, int] = field(default_factory=dict)
    dicom: bool = False


def _file_bytes(path: Path) -> int:
    """The journal's bytes on disk: the database and its write-ahead log (what fills the disk)."""
    total = 0
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total


def take(ctx: Any, outbox: Any, version: str) -> Snapshot:
    """Read the daemon's state now. Runs on the loop thread, so nothing changes under it."""
    now = time.monotonic()
    counters = ctx.metrics.snapshot()
    snap = Snapshot(
        site=ctx.cfg.site.id,
        version=version,
        counters=counters,
        dicom=getattr(ctx.cfg, "dicom", None) is not None,
    )
    for did, r in ctx.runners.items():
        # Never fresh since it started: its age counts from the start, so it grows and alerts.
        since = r.last_ok if r.last_ok is not None else r.started
        snap.devices[did] = DeviceFigures(
            kind=r.cfg.kind,
            age_s=max(0.0, now - since),
            polls=r.polls,
            failures=counters.get(f"{DEVICE_COUNTER}{did}.poll_failures", 0),
            comm_lost=bool(r.comm_lost),
        )
    snap.alarms = {(p, s): 0 for p in PRIORITY_RANK for s in OPEN_STATES}
    for a in ctx.engine.alarms.values():
        if a.state in OPEN_STATES:
            key = (a.priority, a.state)
            snap.alarms[key] = snap.alarms.get(key, 0) + 1
    snap.backlog = outbox.backlog if outbox is not None else 0
    journal = ctx.recorder.journal
    snap.journal_events = journal.last_seq
    snap.journal_bytes = _file_bytes(journal.path)
    snap.journal_fault = ctx.recorder.fault is not None
    return snap
