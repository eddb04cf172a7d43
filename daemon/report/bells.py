"""Call bells and deterioration: response per room, weekly bell-test compliance, deterioration alerts.

Response to a call is measured from the press (the alarm's raise) to its acceptance and to
its cancel in the room (the reset whose actor is ``cancel@<room>``, daemon/bells/rules.py).
A room passes a week's bell test when every one of its buttons recorded a ``bells.test_pass``
in that ISO week (the same all-buttons rule as ``suitemon bells report``); a week without a
pass is a red cell. Compliance = weeks passed / weeks in the period.
"""

from __future__ import annotations

from collections import defaultdict

from suitemon.daemon.bells.weekly import TEST_PASS
from suitemon.daemon.report import plots
from suitemon.daemon.report.context import BuildContext
from suitemon.daemon.report.model import Figure, Section, Table
from suitemon.daemon.report.source import Ev
from suitemon.daemon.report.stats import median, pct, percentile, rnd

KIND = "callbell_io"


class Collector:
    def __init__(self) -> None:
        self.pass_times: list[tuple[str, str, float]] = []

    def subscriptions(self):
        return [(TEST_PASS, self.on_pass)]

    def on_pass(self, ev: Ev) -> None:
        room, button = ev.data.get("room"), ev.data.get("button")
        if isinstance(room, str) and isinstance(button, str):
            self.pass_times.append((room, button, ev.ts))

    def build(self, ctx: BuildContext) -> Section:
        devices = ctx.devices_of_kind(KIND)
        call_types = {d.call_type for d in devices.values()} | {d.emergency_type for d in devices.values()}
        emergency_types = {d.emergency_type for d in devices.values()}
        eps = [e for e in ctx.raised_in_period() if e.type in call_types]
        sec = Section("bells", "Call bells and deterioration")
        if not devices:
            sec.notes.append("No call-bell devices in this configuration.")
            return sec

        rows, accept_dist, cancel_dist = [], {}, {}
        rooms = [(did, room) for did, d in devices.items() for room in d.rooms]
        for _, room in rooms:
            mine = [e for e in eps if e.location == room]
            acc = [e.accepted_at - e.raised_at for e in mine if e.accepted_at is not None]
            can = [
                e.closed_at - e.raised_at
                for e in mine
                if e.closed_at is not None and (e.closed_by or "").startswith("cancel@")
            ]
            name = ctx.area_name(room)
            accept_dist[name], cancel_dist[name] = acc, can
            rows.append(
                [
                    name,
                    len(mine),
                    len(acc),
                    rnd(median(acc)),
                    rnd(percentile(acc, 90)),
                    len(can),
                    rnd(median(can)),
                    rnd(percentile(can, 90)),
                ]
            )
        t_resp = Table(
            "bells_response",
            "Call response per room: press to accept, press to cancel in the room (s)",
            [
                "room",
                "calls",
                "accepted",
                "accept_median_s",
                "accept_p90_s",
                "cancelled_in_room",
                "cancel_median_s",
                "cancel_p90_s",
            ],
            rows,
        )

        weeks = ctx.period.weeks()
        p = ctx.period
        week_sets: dict[tuple[str, str], set] = defaultdict(set)
        for room, button, t in self.pass_times:
            if p.start_ts <= t < p.end_ts:
                week_sets[(room, button)].add(p.iso_week(t))
        t_tests = Table(
            "bells_weekly_tests",
            "Weekly bell test per room (pass = every button passed that week)",
            ["room", *(f"{y}-W{w:02d}" for y, w in weeks), "compliance_pct"],
            [],
        )
        for _did, d in devices.items():
            for room, r in d.rooms.items():
                buttons = list(r.inputs())
                passed = [all(wk in week_sets[(room, b)] for b in buttons) for wk in weeks]
                i = len(t_tests.rows)
                for j, ok in enumerate(passed, start=1):
                    if not ok:
                        t_tests.marks[(i, j)] = "missed"
                t_tests.rows.append(
                    [
                        ctx.area_name(room),
                        *("pass" if ok else "MISSED" for ok in passed),
                        pct(sum(passed), len(weeks)),
                    ]
                )

        det = [e for e in eps if e.type in emergency_types]
        t_det = Table(
            "bells_deterioration",
            "Deterioration alerts: time to accept and who accepted",
            ["raised", "room", "raised_by", "accept_after_s", "accepted_by", "accepted_role", "highest_step"],
            [
                [
                    ctx.local(e.raised_at),
                    ctx.area_name(e.location),
                    e.details.get("origin") or "button",
                    rnd(e.accepted_at - e.raised_at) if e.accepted_at is not None else "not accepted",
                    e.accepted_by or "",
                    e.accepted_role or "",
                    (e.max_step + 1) if e.max_step is not None else "",
                ]
                for e in det
            ],
        )
        sec.tables += [t_resp, t_tests, t_det]
        sec.figures.append(
            Figure(
                "bells_cancel",
                "Press to cancel in the room, per room (s)",
                plots.distribution(cancel_dist, "seconds from press to cancel in the room"),
            )
        )
        if any(accept_dist.values()):
            sec.figures.append(
                Figure(
                    "bells_accept",
                    "Press to accept, per room (s)",
                    plots.distribution(accept_dist, "seconds from press to accept"),
                )
            )
        total_cells = len(weeks) * sum(len(d.rooms) for d in devices.values())
        missed = len(t_tests.marks)
        sec.figures_of_note = {
            "calls": len(eps),
            "deterioration alerts": len(det),
            "bell-test compliance %": pct(total_cells - missed, total_cells),
        }
        return sec
