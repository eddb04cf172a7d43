"""Devices: availability per device and comm-lost episodes.

Availability = share of the *monitored* time (the daemon running) without a comm-lost alarm
for the device. Time with the daemon stopped (``daemon.stopped`` to the next ``daemon.started``)
is unmonitored and shown apart: no reading was fresh then, and the report does not guess. A
daemon that crashed journals no stop: that gap counts as monitored, which the note says.
"""

from __future__ import annotations

from suitemon.daemon.report.context import BuildContext
from suitemon.daemon.report.model import Section, Table
from suitemon.daemon.report.source import Ev
from suitemon.daemon.report.stats import pct, rnd


class Collector:
    def __init__(self) -> None:
        self.running_at_start: bool = True
        self.marks: list[tuple[float, bool]] = []  # (time, running after it)

    def subscriptions(self):
        return [("daemon.started", self.on_daemon), ("daemon.stopped", self.on_daemon)]

    def on_daemon(self, ev: Ev) -> None:
        self.marks.append((ev.ts, ev.type == "daemon.started"))

    def monitored(self, start: float, end: float) -> list[tuple[float, float]]:
        """The intervals of the period with the daemon running."""
        out, running, since = [], self.running_at_start, start
        for t, now_running in self.marks:
            if running and not now_running:
                out.append((since, t))
            if now_running and not running:
                since = t
            running = now_running
        if running:
            out.append((since, end))
        return [(a, b) for a, b in out if b > a]

    def build(self, ctx: BuildContext) -> Section:
        p = ctx.period
        sec = Section("devices", "Devices")
        spans = self.monitored(p.start_ts, p.end_ts)
        monitored = sum(b - a for a, b in spans)
        lost = [
            e
            for e in ctx.episodes.all()
            if e.type == "device.comm_lost" and e.duration_within(p.start_ts, p.end_ts) > 0
        ]
        lost.sort(key=lambda e: e.raised_at)
        rows = []
        for did, dev in ctx.cfg.devices.items():
            mine = [e for e in lost if e.source == did or e.alarm_id == f"{did}.comm_lost"]
            # Lost while the daemon ran: a comm loss across a stop is not counted twice.
            down = sum(
                overlap(e.raised_at, e.closed_at if e.closed_at is not None else p.end_ts, spans)
                for e in mine
            )
            rows.append(
                [
                    did,
                    dev.kind,
                    ctx.area_name(getattr(dev, "location", None)),
                    len(mine),
                    rnd(down / 60.0),
                    pct(max(0.0, monitored - down), monitored, 2),
                ]
            )
        sec.tables.append(
            Table(
                "devices_availability",
                "Availability per device (% of the monitored time with fresh readings)",
                ["device", "kind", "location", "comm_lost_episodes", "comm_lost_min", "availability_pct"],
                rows,
                note=f"Monitored {monitored / 3600:.1f} h of {p.seconds / 3600:.1f} h in the period "
                "(daemon running; a crash without a journaled stop counts as monitored).",
            )
        )
        sec.tables.append(
            Table(
                "devices_comm_lost",
                "Comm-lost episodes",
                ["raised", "device", "cleared", "minutes"],
                [
                    [
                        ctx.local(e.raised_at),
                        e.source or e.alarm_id,
                        ctx.local(e.closed_at) or "open",
                        rnd(e.duration_within(p.start_ts, p.end_ts) / 60.0),
                    ]
                    for e in lost
                ],
            )
        )
        sec.figures_of_note = {"monitored hours": rnd(monitored / 3600.0), "comm-lost episodes": len(lost)}
        return sec


def overlap(a: float, b: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, y) - max(a, x)) for x, y in spans)
