"""Radiation: alarm episodes per area monitor, suspected spills, and alarm time per area per day.

The daily integrated dose per area is computed by the daemon (daemon/radiation/logic.py) and
published with the device state, which is not journaled; a report built from the journal alone
cannot show it until the daemon journals each closed day (left open, see docs/decisions.md).
"""

from __future__ import annotations

from collections import defaultdict

from suitemon.daemon.report import plots
from suitemon.daemon.report.context import BuildContext
from suitemon.daemon.report.model import Figure, Section, Table
from suitemon.daemon.report.stats import rnd

KINDS = ("area_monitor_modbus", "ludlum375")


def subscriptions():
    return []


def build(ctx: BuildContext) -> Section:
    sec = Section("radiation", "Radiation")
    eps = [e for e in ctx.raised_in_period() if e.type.startswith("radiation.")]
    monitors = ctx.devices_of_kind(*KINDS)
    p = ctx.period
    rows = [[ctx.local(e.raised_at), ctx.area_name(e.location), e.source or "", e.type.removeprefix("radiation."),
             e.priority, rnd(e.duration_within(p.start_ts, p.end_ts) / 60.0), ctx.local(e.closed_at) or "open",
             e.closed_by or ""] for e in eps]
    sec.tables.append(Table("radiation_episodes", "Radiation alarm episodes",
                            ["raised", "area", "monitor", "what", "priority", "minutes", "closed", "closed_by"], rows))
    spills = [e for e in eps if e.type == "radiation.spill"]
    sec.tables.append(Table("radiation_spills", "Suspected spills",
                            ["raised", "area", "monitor", "baseline_usv_h", "level_usv_h", "closed", "closed_by"],
                            [[ctx.local(e.raised_at), ctx.area_name(e.location), e.source or "",
                              e.details.get("baseline_usv_h"), e.details.get("level_usv_h"),
                              ctx.local(e.closed_at) or "open", e.closed_by or ""] for e in spills]))
    days = p.days()
    areas = sorted({ctx.area_name(getattr(d, "location", None) or getattr(d, "area", None)) for d in monitors.values()}
                   | {ctx.area_name(e.location) for e in eps})
    minutes: dict[str, dict] = {a: defaultdict(float) for a in areas}
    for e in eps:
        if e.type in ("radiation.rate_alarm", "radiation.rate_warning", "radiation.spill"):
            minutes[ctx.area_name(e.location)][p.local_day(e.raised_at)] += e.duration_within(p.start_ts, p.end_ts) / 60
    sec.tables.append(Table("radiation_alarm_minutes", "Minutes above a dose-rate level (or with a suspected spill), per area per day",
                            ["day", *areas], [[d.isoformat(), *(rnd(minutes[a][d]) for a in areas)] for d in days],
                            shown=len(days)))
    if areas:
        sec.figures.append(Figure("radiation_minutes", "Minutes above a level per area per day", plots.lines(
            [d.strftime("%d %b") for d in days], {a: [minutes[a][d] for d in days] for a in areas}, "minutes")))
    sec.notes.append("Daily integrated dose per area: not in the journal (the daemon publishes it with the "
                     "monitor's state only), so not in this report.")
    sec.figures_of_note = {"radiation alarm episodes": len(eps), "suspected spills": len(spills)}
    return sec
