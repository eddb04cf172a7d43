"""Power: time on battery, staged shutdown sequences with their step timings, UPS battery health.

Rehearsals (``suitemon shutdown --dry-run``) print their timeline and are not journaled, so
only real sequences appear here.
"""

from __future__ import annotations

from suitemon.daemon.report.context import BuildContext
from suitemon.daemon.report.model import Section, Table
from suitemon.daemon.report.source import Ev
from suitemon.daemon.report.stats import rnd

HEALTH = (
    "ups.low_battery",
    "ups.battery_replace",
    "ups.battery_disconnected",
    "ups.overload",
    "ups.over_temperature",
    "ups.fault",
)
STEP_END = {
    "shutdown.step.acked": "acked",
    "shutdown.step.failed": "failed",
    "shutdown.step.timeout": "timeout",
    "shutdown.step.skipped": "skipped",
    "shutdown.step.released": "released",
}
SEQUENCE_END = {"shutdown.completed": "completed", "shutdown.aborted": "aborted"}


class Collector:
    def __init__(self) -> None:
        self.sequences: list[dict] = []

    def subscriptions(self):
        return [("shutdown.", self.on_shutdown)]

    def on_shutdown(self, ev: Ev) -> None:
        if ev.type == "shutdown.started" or (not self.sequences and ev.type.startswith("shutdown.step")):
            self.sequences.append(
                {
                    "started": ev.ts,
                    "trigger": ev.data.get("trigger", "before the period"),
                    "by": ev.actor,
                    "steps": {},
                    "outcome": "not finished",
                    "ended": None,
                }
            )
            if ev.type == "shutdown.started":
                return
        if not self.sequences:
            return
        seq = self.sequences[-1]
        step = ev.data.get("step")
        if ev.type == "shutdown.step.started" and isinstance(step, str):
            seq["steps"][step] = {"started": ev.ts, "ended": None, "result": "no reply"}
        elif ev.type in STEP_END and isinstance(step, str):
            s = seq["steps"].setdefault(step, {"started": None, "ended": None, "result": ""})
            if s["ended"] is None:
                s["ended"], s["result"] = ev.ts, STEP_END[ev.type]
        elif ev.type in SEQUENCE_END and seq["ended"] is None:
            seq["ended"], seq["outcome"] = ev.ts, SEQUENCE_END[ev.type]

    def build(self, ctx: BuildContext) -> Section:
        p = ctx.period
        sec = Section("power", "Power")
        on_batt = [
            e
            for e in ctx.episodes.all()
            if e.type == "ups.on_battery" and e.duration_within(p.start_ts, p.end_ts) > 0
        ]
        on_batt.sort(key=lambda e: e.raised_at)
        total = sum(e.duration_within(p.start_ts, p.end_ts) for e in on_batt)
        sec.tables.append(
            Table(
                "power_on_battery",
                "Time on battery",
                ["from", "to", "ups", "seconds"],
                [
                    [
                        ctx.local(e.raised_at),
                        ctx.local(e.closed_at) or "still on battery",
                        e.source or "",
                        rnd(e.duration_within(p.start_ts, p.end_ts)),
                    ]
                    for e in on_batt
                ],
                note=f"Total {total / 60:.1f} min on battery in the period.",
            )
        )
        rows = []
        for n, s in enumerate(self.sequences, start=1):
            rows.append(
                [
                    n,
                    ctx.local(s["started"]),
                    s["trigger"],
                    s["by"],
                    "(sequence)",
                    "",
                    s["outcome"],
                    rnd(s["ended"] - s["started"]) if s["ended"] is not None else "",
                ]
            )
            for step, st in s["steps"].items():
                took = (
                    st["ended"] - st["started"]
                    if st["ended"] is not None and st["started"] is not None
                    else None
                )
                rows.append(
                    [
                        n,
                        ctx.local(st["started"]),
                        "",
                        "",
                        step,
                        rnd(st["started"] - s["started"]) if st["started"] is not None else "",
                        st["result"],
                        rnd(took),
                    ]
                )
        sec.tables.append(
            Table(
                "power_shutdowns",
                "Shutdown sequences and their step timings",
                ["sequence", "started", "trigger", "by", "step", "offset_s", "result", "took_s"],
                rows,
                note="Rehearsals (dry runs) are not journaled and do not appear here.",
            )
        )
        health = [e for e in ctx.raised_in_period() if e.type in HEALTH]
        sec.tables.append(
            Table(
                "power_ups_health",
                "UPS battery health events",
                ["raised", "ups", "what", "priority", "closed"],
                [
                    [
                        ctx.local(e.raised_at),
                        e.source or "",
                        e.type.removeprefix("ups."),
                        e.priority,
                        ctx.local(e.closed_at) or "open",
                    ]
                    for e in health
                ],
            )
        )
        sec.figures_of_note = {
            "minutes on battery": rnd(total / 60.0),
            "shutdown sequences": len(self.sequences),
        }
        return sec
