"""What suitemon tells systemd: READY, a one-line STATUS, and WATCHDOG pings only while healthy.

The watchdog rule (docs/deployment.md, "Watchdog"):

* the pings come from a task on the event loop, so a blocked loop (a driver stuck in a
  blocking call, a deadlock) sends none;
* every enabled device runner must have finished a poll attempt within its
  progress bound: ``2 * poll_deadline + poll_s + HANG_GRACE_S``. A healthy runner
  always does: opening and polling are each cut off at the poll deadline, then it
  sleeps at most one period. A slow or silent device is *not* a hang (it raises its
  comm-lost alarm instead); only a runner that stopped moving is;
* a runner task that ended, and the daemon's own age-watch and status tasks, count as
  hung too: they should run for ever.

When the rule fails the pings stop and systemd restarts the service after
``WatchdogSec``: everything the daemon knows is in the journal, so a restart loses
nothing, while a half-dead monitor would show stale calm.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from suitemon.daemon.devices import DeviceRunner
from suitemon.daemon.sdnotify import Notifier, status_line

log = structlog.get_logger("suitemon.health")

HANG_GRACE_S = 2.0
READY_WAIT_CAP_S = 30.0
STATUS_ONLY_TICK_S = 2.0


def progress_bound(runner: DeviceRunner) -> float:
    """The longest a healthy runner goes between two finished poll attempts."""
    return 2 * runner.poll_deadline + runner.cfg.poll_s + HANG_GRACE_S


def hung_parts(
    runners: Mapping[str, DeviceRunner], essential: Mapping[str, asyncio.Task[Any]], now: float
) -> list[str]:
    """Everything that stopped progressing, as short phrases; empty when healthy."""
    problems = []
    for name, task in essential.items():
        if task.done():
            problems.append(f"{name} task ended")
    for did, r in runners.items():
        if r.task is None:
            continue  # not started yet (start-up, or being replaced by a reload)
        if r.task.done():
            problems.append(f"device {did}: runner ended")
            continue
        silent = now - r.last_progress
        if silent > progress_bound(r):
            problems.append(f"device {did}: no poll finished for {silent:.0f} s")
    return problems


def _what(problems: Sequence[str]) -> list[str]:
    return [p.split(":")[0] for p in problems]


def device_counts(runners: Mapping[str, DeviceRunner]) -> dict[str, int]:
    counts = {"ok": 0, "stale": 0, "lost": 0}
    for r in runners.values():
        counts["lost" if r.comm_lost else "stale" if r.stale() else "ok"] += 1
    return counts


def summary(daemon: Any, problems: Sequence[str] = ()) -> str:
    """The one-line health summary shown by ``systemctl status suitemon``."""
    ctx = daemon.ctx
    c = device_counts(ctx.runners)
    parts = [
        f"devices {c['ok']} ok, {c['stale']} stale, {c['lost']} lost",
        f"{len(ctx.engine.alarms)} open alarms",
        f"backlog {daemon.outbox.backlog}",
        f"journal {'FAULT: ' + daemon.journal_fault if daemon.journal_fault else 'ok'}",
        f"mqtt {'connected' if daemon.link.connected else 'DISCONNECTED'}",
    ]
    if problems:
        parts.append("WATCHDOG WITHHELD: " + "; ".join(problems))
    return "; ".join(parts)


class SystemdWatch:
    """One task: READY after the first poll of every device, then STATUS and WATCHDOG."""

    def __init__(self, daemon: Any, notifier: Notifier, watchdog_s: float | None):
        self.daemon = daemon
        self.notifier = notifier
        self.watchdog_s = watchdog_s
        # A third of the timeout leaves two chances before systemd acts, on a loaded box.
        self.tick = watchdog_s / 3 if watchdog_s else STATUS_ONLY_TICK_S
        self.pings = 0
        self.withheld: list[str] = []
        self._last_status = ""
        self.ready_sent = False

    async def run(self) -> None:
        await self._first_polls()
        self.notifier.ready(self._status_text())
        self.ready_sent = True
        log.info("told systemd we are ready", watchdog_s=self.watchdog_s)
        expected = time.monotonic()
        while True:
            now = time.monotonic()
            late = now - expected
            if late > max(1.0, self.tick):
                # The loop was blocked: those pings were missed, systemd may already act.
                log.error("event loop was blocked", seconds=round(late + self.tick, 2))
                self.daemon.ctx.metrics.inc("daemon.loop_stalls")
            self.check(now)
            expected = time.monotonic() + self.tick
            await asyncio.sleep(self.tick)

    def check(self, now: float) -> list[str]:
        d = self.daemon
        problems = hung_parts(d.ctx.runners, d.essential_tasks, now)
        if _what(problems) != _what(self.withheld):  # not again just because a count of seconds grew
            if problems:
                log.error("watchdog pings withheld: systemd will restart suitemon", problems=problems)
            else:
                log.warning("watchdog pings resumed")
        self.withheld = problems
        if not problems and self.watchdog_s:
            if self.notifier.watchdog():
                self.pings += 1
        self._send_status()
        return problems

    def _status_text(self) -> str:
        return summary(self.daemon, self.withheld)

    def _send_status(self) -> None:
        text = self._status_text()
        if text != self._last_status:
            self.notifier.status(text)
            self._last_status = text

    async def _first_polls(self) -> None:
        """Wait (bounded) until every runner has tried its device once, so READY means
        "drivers opened or reported": a device that is down at boot is a comm-lost
        alarm, never a failed start (a failed start would monitor nothing)."""
        runners = self.daemon.ctx.runners
        if not runners:
            return
        bound = min(READY_WAIT_CAP_S, max(2 * r.poll_deadline + 1.0 for r in runners.values()))
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline and any(r.polls == 0 for r in runners.values()):
            if self.watchdog_s and not hung_parts(runners, self.daemon.essential_tasks, time.monotonic()):
                self.notifier.watchdog()
            await asyncio.sleep(0.05)

    # -- lifecycle notes ---------------------------------------------------------
    def reloading(self) -> None:
        self.notifier.reloading()

    def reloaded(self, outcome: str) -> None:
        self.notifier.notify("READY=1", status_line(f"config {outcome}; {self._status_text()}"))
        self._last_status = ""

    def stopping(self) -> None:
        self.notifier.stopping("stopping: finishing journal writes, publishing offline")
