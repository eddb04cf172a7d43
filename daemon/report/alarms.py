"""Alarm load and alarm fatigue (IEC 60601-1-8; alarm-management programmes).

Per day by priority, the ten most frequent alarms, alarms that cleared by themselves within
a minute (nuisance candidates), time to acknowledge and to accept per priority and per room,
escalations that reached the second step or later, and alarms still open at the period's end.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from suitemon.daemon.report import plots
from suitemon.daemon.report.context import BuildContext
from suitemon.daemon.report.model import Figure, Section, Table
from suitemon.daemon.report.stats import median, pct, percentile, rnd

NUISANCE_S = 60.0
PRIORITIES = ("high", "medium", "low")


def subscriptions():
    return []  # alarm episodes only


def response_rows(groups: dict[str, list]) -> list[list]:
    rows = []
    for key in groups:
        eps = groups[key]
        ack = [e.acknowledged_at - e.raised_at for e in eps if e.acknowledged_at is not None]
        acc = [e.accepted_at - e.raised_at for e in eps if e.accepted_at is not None]
        rows.append(
            [
                key,
                len(eps),
                len(ack),
                rnd(median(ack)),
                rnd(percentile(ack, 90)),
                len(acc),
                rnd(median(acc)),
                rnd(percentile(acc, 90)),
            ]
        )
    return rows


RESPONSE_COLUMNS = [
    "group",
    "alarms",
    "acknowledged",
    "ack_median_s",
    "ack_p90_s",
    "accepted",
    "accept_median_s",
    "accept_p90_s",
]


def build(ctx: BuildContext) -> Section:
    eps = ctx.raised_in_period()
    days = ctx.period.days()
    per_day = {d: Counter() for d in days}
    for e in eps:
        per_day[ctx.period.local_day(e.raised_at)][e.priority] += 1
    t_day = Table(
        "alarms_per_day",
        "Alarms raised per day, by priority",
        ["day", *PRIORITIES, "total"],
        [[d.isoformat(), *(per_day[d][p] for p in PRIORITIES), sum(per_day[d].values())] for d in days],
        shown=len(days),
    )

    counts = Counter(e.alarm_id for e in eps)
    kinds = {e.alarm_id: (e.type, e.priority) for e in eps}
    t_top = Table(
        "alarms_top10",
        "The ten most frequent alarms",
        ["alarm_id", "type", "priority", "count", "share_pct"],
        [[a, kinds[a][0], kinds[a][1], n, pct(n, len(eps))] for a, n in counts.most_common(10)],
    )

    nuisance = defaultdict(list)
    for e in eps:
        if (
            e.closed_by_event == "alarm.cleared"
            and e.closed_at is not None
            and e.closed_at - e.raised_at < NUISANCE_S
        ):
            nuisance[e.alarm_id].append(e.closed_at - e.raised_at)
    t_nuis = Table(
        "alarms_nuisance",
        f"Alarms that cleared by themselves within {NUISANCE_S:g} s (nuisance candidates)",
        ["alarm_id", "count", "share_of_its_alarms_pct", "median_duration_s"],
        sorted(
            ([a, len(v), pct(len(v), counts[a]), rnd(median(v))] for a, v in nuisance.items()),
            key=lambda r: -r[1],
        ),
    )

    by_pri = {p: [e for e in eps if e.priority == p] for p in PRIORITIES}
    t_pri = Table(
        "alarms_response_priority",
        "Time to acknowledge and to accept, per priority (seconds)",
        RESPONSE_COLUMNS,
        response_rows({p: v for p, v in by_pri.items() if v}),
    )
    by_room: dict[str, list] = defaultdict(list)
    for e in eps:
        by_room[ctx.area_name(e.location)].append(e)
    t_room = Table(
        "alarms_response_room",
        "Time to acknowledge and to accept, per room (seconds)",
        RESPONSE_COLUMNS,
        response_rows(dict(sorted(by_room.items()))),
    )

    esc = [e for e in eps if e.max_step is not None and e.max_step >= 1]
    t_esc = Table(
        "alarms_escalated",
        "Escalations that reached step 2 or later",
        ["raised", "alarm_id", "priority", "highest_step", "accepted_by", "accepted_role"],
        [
            [
                ctx.local(e.raised_at),
                e.alarm_id,
                e.priority,
                e.max_step + 1,
                e.accepted_by or "",
                e.accepted_role or "",
            ]
            for e in esc
        ],
        note="Steps are counted from 1 (the first recipients notified).",
    )

    still = sorted((e for e in ctx.episodes.all() if e.open), key=lambda e: e.raised_at)
    t_open = Table(
        "alarms_open_at_end",
        "Alarms still open at the end of the period",
        ["raised", "alarm_id", "priority", "state", "location"],
        [[ctx.local(e.raised_at), e.alarm_id, e.priority, e.state, ctx.area_name(e.location)] for e in still],
    )

    sec = Section(
        "alarms", "Alarm load and alarm fatigue", [t_day, t_top, t_nuis, t_pri, t_room, t_esc, t_open]
    )
    sec.figures.append(
        Figure(
            "alarms_per_day",
            "Alarms per day by priority",
            plots.stacked_bars(
                [d.strftime("%d %b") for d in days],
                {p: [per_day[d][p] for d in days] for p in PRIORITIES},
                "alarms",
                plots.PRIORITY_COLOURS,
            ),
        )
    )
    sec.figures_of_note = {
        "alarms raised": len(eps),
        "escalated to step 2 or later": len(esc),
        "open at the end": len(still),
        "nuisance candidates": sum(len(v) for v in nuisance.values()),
    }
    return sec
