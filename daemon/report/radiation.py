"""Radiation: daily integrated dose per area monitor, alarm episodes, suspected spills, and the
time above a level per area per day.

The daily dose is what the monitor's rules integrated (daemon/radiation/logic.py) and journaled
as ``radiation.daily_dose`` when the local day closed; a day the monitor did not cover wholly is
marked incomplete, an over-range day a lower bound, never filled in here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from suitemon.daemon.report import plots
from suitemon.daemon.report.context import BuildContext
from suitemon.daemon.report.model import Figure, Section, Table
from suitemon.daemon.report.source import Ev
from suitemon.daemon.report.stats import rnd

KINDS = ("area_monitor_modbus", "ludlum375")


class Collector:
    def __init__(self) -> None:
        self.days: list[Ev] = []

    def subscriptions(self):
        return [("radiation.daily_dose", self.days.append)]

    def build(self, ctx: BuildContext) -> Section:
        return build(ctx, self.days)


def _daily_dose(ctx: BuildContext, days_ev: list[Ev], sec: Section) -> None:
    days = ctx.period.days()
    cols: dict[str, dict[str, Any]] = {}
    flagged = []
    for ev in days_ev:
        d = ev.data
        name = f"{ctx.area_name(d.get('area'))} ({d.get('device')})"
        cols.setdefault(name, {})[d.get("day")] = d.get("usv")
        if not d.get("complete", True) or d.get("lower_bound"):
            flagged.append(
                f"{d.get('day')} {name}: "
                + ", ".join(
                    w
                    for w, on in (
                        ("incomplete", not d.get("complete", True)),
                        ("lower bound", d.get("lower_bound")),
                    )
                    if on
                )
            )
    names = sorted(cols)
    sec.tables.append(
        Table(
            "radiation_daily_dose",
            "Daily integrated dose per area monitor (uSv)",
            ["day", *names],
            [[d.isoformat(), *(cols[n].get(d.isoformat()) for n in names)] for d in days],
            note=("Not whole: " + "; ".join(flagged)) if flagged else "Every day shown was covered whole.",
            shown=len(days),
        )
    )
    if names:
        sec.figures.append(
            Figure(
                "radiation_daily_dose",
                "Daily integrated dose per area monitor (uSv)",
                plots.lines(
                    [d.strftime("%d %b") for d in days],
                    {n: [cols[n].get(d.isoformat()) for d in days] for n in names},
                    "uSv",
                ),
            )
        )


def build(ctx: BuildContext, days_ev: list[Ev]) -> Section:
    sec = Section("radiation", "Radiation")
    _daily_dose(ctx, days_ev, sec)
    eps = [e for e in ctx.raised_in_period() if e.type.startswith("radiation.")]
    monitors = ctx.devices_of_kind(*KINDS)
    p = ctx.period
    rows = [
        [
            ctx.local(e.raised_at),
            ctx.area_name(e.location),
            e.source or "",
            e.type.removeprefix("radiation."),
            e.priority,
            rnd(e.duration_within(p.start_ts, p.end_ts) / 60.0),
            ctx.local(e.closed_at) or "open",
            e.closed_by or "",
        ]
        for e in eps
    ]
    sec.tables.append(
        Table(
            "radiation_episodes",
            "Radiation alarm episodes",
            ["raised", "area", "monitor", "what", "priority", "minutes", "closed", "closed_by"],
            rows,
        )
    )
    spills = [e for e in eps if e.type == "radiation.spill"]
    sec.tables.append(
        Table(
            "radiation_spills",
            "Suspected spills",
            ["raised", "area", "monitor", "baseline_usv_h", "level_usv_h", "closed", "closed_by"],
            [
                [
                    ctx.local(e.raised_at),
                    ctx.area_name(e.location),
                    e.source or "",
                    e.details.get("baseline_usv_h"),
                    e.details.get("level_usv_h"),
                    ctx.local(e.closed_at) or "open",
                    e.closed_by or "",
                ]
                for e in spills
            ],
        )
    )
    days = p.days()
    areas = sorted(
        {ctx.area_name(getattr(d, "location", None) or getattr(d, "area", None)) for d in monitors.values()}
        | {ctx.area_name(e.location) for e in eps}
    )
    minutes: dict[str, dict] = {a: defaultdict(float) for a in areas}
    for e in eps:
        if e.type in ("radiation.rate_alarm", "radiation.rate_warning", "radiation.spill"):
            minutes[ctx.area_name(e.location)][p.local_day(e.raised_at)] += (
                e.duration_within(p.start_ts, p.end_ts) / 60
            )
    sec.tables.append(
        Table(
            "radiation_alarm_minutes",
            "Minutes above a dose-rate level (or with a suspected spill), per area per day",
            ["day", *areas],
            [[d.isoformat(), *(rnd(minutes[a][d]) for a in areas)] for d in days],
            shown=len(days),
        )
    )
    if areas:
        sec.figures.append(
            Figure(
                "radiation_minutes",
                "Minutes above a level per area per day",
                plots.lines(
                    [d.strftime("%d %b") for d in days],
                    {a: [minutes[a][d] for d in days] for a in areas},
                    "minutes",
                ),
            )
        )
    sec.figures_of_note = {"radiation alarm episodes": len(eps), "suspected spills": len(spills)}
    return sec
