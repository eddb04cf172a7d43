"""CT dose reports of one study, de-duplicated by irradiation event.

Some scanners send a new, cumulative CT dose report after every exposure: each repeats the
earlier events (same Irradiation Event UID, 113769) and carries the accumulated DLP so far.
Adding the totals of such reports counts the first exposures again and again, which inflates
the DLP and raises false "reference level exceeded" alarms.

Reports that share an event belong to one group (connected by shared UIDs). Each group
becomes one report: its events are the distinct events of the group, and its total is the
accumulated total of its most complete report (the one with the most distinct events; the
latest received among equals), used only when that report holds every event of the group.
Otherwise the total is left out and the check adds up the distinct events and says so
(``sum_of_events``). Totals of different groups (reports with no event in common, e.g. a
second CT on another session) are added, as before. An event without a UID (113769 is
mandatory, but) is matched only by being identical in every value to one already counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from suitemon.daemon.dicom.dose_sr import CtDoseReport, CtEvent


@dataclass(frozen=True)
class MergedCt:
    reports: list[CtDoseReport]  # one per group of reports sharing events, in arrival order
    received: int  # how many reports arrived
    superseded: list[str]  # SOP instances whose totals were not used: another report covers them

    @property
    def events(self) -> list[CtEvent]:
        return [e for r in self.reports for e in r.events]


def _groups(reports: list[CtDoseReport]) -> list[list[int]]:
    parent = list(range(len(reports)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, r in enumerate(reports):
        for e in r.events:
            if e.event_uid is None:
                continue
            j = owner.setdefault(e.event_uid, i)
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(reports)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def _merge(group: list[CtDoseReport]) -> tuple[CtDoseReport, list[str]]:
    if len(group) == 1:
        return group[0], []
    # Most complete: most distinct events; among equals the latest received (the last cumulative report).
    best = max(reversed(group), key=lambda r: len({e.event_uid for e in r.events if e.event_uid}))
    seen: set = set()
    events: list[CtEvent] = []
    unreadable = list(best.unreadable)
    for r in (best, *[r for r in group if r is not best]):
        before = len(events)
        for e in r.events:
            # Without a UID, an event identical in every value to one already counted is taken for
            # a repeat; any difference keeps it (counting twice errs towards an alarm, not a miss).
            key = e.event_uid or (
                "no-uid",
                e.acquisition_type,
                e.ctdivol_mgy,
                e.dlp_mgycm,
                e.phantom,
                e.protocol,
            )
            if key in seen and (e.event_uid is not None or r is not best):
                continue
            seen.add(key)
            events.append(e)
        if r is not best and len(events) > before:
            unreadable.extend(r.unreadable)  # an event of this report is used: so are its faults
    complete = len(events) == len(best.events)
    total = best.dlp_total_mgycm if complete else None
    merged = CtDoseReport(best.sop_instance, tuple(events), total, len(events), tuple(unreadable))
    return merged, [r.sop_instance for r in group if r is not best]


def merge_ct_reports(reports: list[CtDoseReport]) -> MergedCt:
    out: list[CtDoseReport] = []
    superseded: list[str] = []
    for idx in _groups(reports):
        merged, gone = _merge([reports[i] for i in idx])
        out.append(merged)
        superseded.extend(gone)
    return MergedCt(out, len(reports), superseded)
