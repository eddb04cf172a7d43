"""``suitemon fleet report``: the sites side by side, from the fleet database.

One query per section; every section is a list of rows keyed by site, printed as aligned text or
CSV (one header line per section, a blank line between). The single-site report may later share
its section definitions; this one reads only PostgreSQL, not a site's journal.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

# A room is compliant when it passed a bell test in the last week (docs/bells.md: weekly test).
BELL_TEST_INTERVAL = timedelta(days=7)

SECTIONS: dict[str, tuple[str, str]] = {
    "events": (
        "Events received (seq gaps = events the database never got)",
        """
        SELECT site, count(*) AS events, min(seq) AS first_seq, max(seq) AS last_seq,
               (max(seq) - min(seq) + 1) - count(*) AS seq_gaps, max(ts) AS last_event
        FROM fleet_event WHERE ts >= %(since)s AND ts < %(until)s GROUP BY site ORDER BY site""",
    ),
    "alarm_load": (
        "Alarm load",
        """
        SELECT site, count(*) AS raised,
               count(*) FILTER (WHERE data->'alarm'->>'priority' = 'high') AS high,
               count(*) FILTER (WHERE data->'alarm'->>'priority' = 'medium') AS medium,
               count(*) FILTER (WHERE data->'alarm'->>'priority' = 'low') AS low,
               round(count(*) / greatest(extract(epoch FROM %(until)s::timestamptz - %(since)s::timestamptz) / 86400, 1)
                     ::numeric, 1) AS per_day
        FROM fleet_event WHERE type = 'alarm.raised' AND ts >= %(since)s AND ts < %(until)s
        GROUP BY site ORDER BY site""",
    ),
    "response": (
        "Response to alarms (raise -> first acknowledge or accept, seconds)",
        """
        WITH raised AS (
            SELECT site, data->'alarm'->>'occurrence' AS occ, data->'alarm'->>'priority' AS priority, ts
            FROM fleet_event WHERE type = 'alarm.raised' AND ts >= %(since)s AND ts < %(until)s),
        answered AS (
            SELECT site, data->'alarm'->>'occurrence' AS occ, min(ts) AS ts FROM fleet_event
            WHERE type IN ('alarm.acknowledged', 'alarm.accepted') GROUP BY 1, 2)
        SELECT r.site, count(*) AS raised, count(a.ts) AS answered,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.ts - r.ts))::numeric, 1)
                   AS median_s,
               round(percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM a.ts - r.ts))::numeric, 1)
                   AS p90_s,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.ts - r.ts))
                     FILTER (WHERE r.priority = 'high')::numeric, 1) AS high_median_s
        FROM raised r LEFT JOIN answered a ON a.site = r.site AND a.occ = r.occ
        GROUP BY r.site ORDER BY r.site""",
    ),
    "bell_tests": (
        "Weekly bell tests (rooms that passed in the 7 days before the report's end)",
        """
        WITH rooms AS (
            SELECT DISTINCT site, data->>'room' AS room FROM fleet_event
            WHERE type IN ('bells.test_pass', 'bells.test_mode', 'bells.deterioration') AND data ? 'room'),
        last_pass AS (
            SELECT site, data->>'room' AS room, max(ts) AS ts FROM fleet_event
            WHERE type = 'bells.test_pass' AND ts < %(until)s GROUP BY 1, 2)
        SELECT r.site, count(*) AS rooms,
               count(*) FILTER (WHERE p.ts >= %(until)s::timestamptz - %(bell)s) AS passed,
               round(100.0 * count(*) FILTER (WHERE p.ts >= %(until)s::timestamptz - %(bell)s) / count(*), 0)
                   AS compliance_pct,
               (SELECT count(*) FROM fleet_event o WHERE o.site = r.site AND o.type = 'alarm.raised'
                  AND o.data->'alarm'->>'type' = 'bells.test_overdue'
                  AND o.ts >= %(since)s AND o.ts < %(until)s) AS overdue_alarms
        FROM rooms r LEFT JOIN last_pass p ON p.site = r.site AND p.room = r.room
        GROUP BY r.site ORDER BY r.site""",
    ),
    "doses": (
        "Administrations per exam: reference-level compliance and median activity",
        """
        WITH d AS (
            SELECT site, coalesce(data->>'exam', '?') AS exam, (data->>'administered_mbq')::float AS mbq,
                   (SELECT (c->>'ok')::boolean FROM jsonb_array_elements(data->'checks') c
                     WHERE c->>'check' = 'reference_level' LIMIT 1) AS ref_ok
            FROM fleet_event WHERE type = 'dose.administered' AND ts >= %(since)s AND ts < %(until)s)
        SELECT site, exam, count(*) AS administrations,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY mbq)::numeric, 1) AS median_mbq,
               count(*) FILTER (WHERE ref_ok) AS within_ref,
               count(*) FILTER (WHERE ref_ok = false) AS above_ref,
               count(*) FILTER (WHERE ref_ok IS NULL) AS not_evaluated,
               round(100.0 * count(*) FILTER (WHERE ref_ok) / nullif(count(ref_ok), 0), 0) AS compliance_pct
        FROM d GROUP BY site, exam ORDER BY site, exam""",
    ),
    "power": (
        "Power events",
        """
        SELECT site,
               count(*) FILTER (WHERE type = 'alarm.raised' AND data->'alarm'->>'type' LIKE 'ups.%%') AS ups_alarms,
               count(*) FILTER (WHERE type = 'alarm.raised' AND data->'alarm'->>'type' = 'ups.on_battery')
                   AS on_battery,
               count(*) FILTER (WHERE type = 'shutdown.started') AS shutdowns_started,
               count(*) FILTER (WHERE type = 'shutdown.point_of_no_return') AS past_point_of_no_return
        FROM fleet_event WHERE ts >= %(since)s AND ts < %(until)s
          AND (type IN ('shutdown.started', 'shutdown.point_of_no_return')
               OR (type = 'alarm.raised' AND data->'alarm'->>'type' LIKE 'ups.%%'))
        GROUP BY site ORDER BY site""",
    ),
}


def build(conn, since: datetime | None = None, until: datetime | None = None) -> dict[str, dict]:
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=7)
    params = {"since": since, "until": until, "bell": BELL_TEST_INTERVAL}
    out = {}
    for key, (title, sql) in SECTIONS.items():
        cur = conn.execute(sql, params)
        cols = [d.name for d in cur.description]
        out[key] = {"title": title, "columns": cols, "rows": [list(r) for r in cur.fetchall()]}
    out["_period"] = {"since": since.isoformat(), "until": until.isoformat()}
    return out


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(v)


def as_text(rep: dict) -> str:
    p = rep["_period"]
    out = [f"Fleet report {p['since'][:19]} .. {p['until'][:19]} (UTC)"]
    for key, sec in rep.items():
        if key.startswith("_"):
            continue
        out += ["", f"## {sec['title']}"]
        table = [sec["columns"]] + [[_cell(v) for v in r] for r in sec["rows"]]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(sec["columns"]))]
        for row in table:
            out.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if not sec["rows"]:
            out.append("(none)")
    return "\n".join(out) + "\n"


def as_csv(rep: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for key, sec in rep.items():
        if key.startswith("_"):
            continue
        w.writerow(["section", *sec["columns"]])
        for r in sec["rows"]:
            w.writerow([key, *["" if v is None else _cell(v) for v in r]])
        buf.write("\n")
    return buf.getvalue()
