"""The page's sections, derived from the :class:`SuiteModel` store.

Pure functions of the store and the config, so they are tested without a browser.
Times go out as ISO strings (the browser counts down and ages them against the
server's clock, which every push carries); nothing here guesses a value that was
not published. No patient reference is ever put on the page.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from suitemon.daemon.alarms import PRIORITY_RANK, iso
from suitemon.daemon.board.model import SuiteModel, parse_ts
from suitemon.daemon.board.trends import STALE_AFTER_S, WINDOW_S, dose_rate_of
from suitemon.drivers.radiation import rules_for

TILE_KINDS = ("uptake_room", "hot_lab", "scanner_room")
OPEN = ("active", "acknowledged")
DONE_STEP = {"done", "complete", "completed", "ok", "ready", "off", "shutdown", "skipped"}
UPS_VALUE_KEYS = (
    "on_battery",
    "online",
    "power_failure",
    "shutdown_imminent",
    "runtime_s",
    "runtime_remaining_s",
    "charge_pct",
    "state_of_charge_pct",
    "load_pct",
    "input_voltage",
    "input_v",
    "output_voltage",
    "output_v",
    "battery_temperature",
)


def _rank(a: dict[str, Any]) -> tuple:
    return (PRIORITY_RANK.get(a.get("priority"), 3), a.get("raised_at") or "")


def alarm_actions(a: dict[str, Any]) -> list[str]:
    """Which commands make sense for this record (the daemon still decides)."""
    acts = []
    esc = a.get("escalation") or None
    if esc and not esc.get("accepted_by"):
        acts += ["accept", "reject"]
    if a.get("state") == "active":
        acts.append("ack")
    if a.get("latching") and a.get("condition") == "absent":
        acts.append("reset")
    return acts


def open_alarms(model: SuiteModel, cfg) -> list[dict[str, Any]]:
    out = []
    for aid, a in model.alarms.items():
        if a.get("state") not in OPEN:
            continue
        loc = a.get("location")
        out.append(
            {
                "alarm_id": a.get("alarm_id") or aid,
                "occurrence": a.get("occurrence"),
                "priority": a.get("priority") if a.get("priority") in PRIORITY_RANK else "high",
                "kind": a.get("kind"),
                "type": a.get("type"),
                "state": a.get("state"),
                "condition": a.get("condition"),
                "latching": bool(a.get("latching")),
                "source": a.get("source"),
                "location": loc,
                "location_name": cfg.areas[loc].name if loc in cfg.areas else loc,
                "message": a.get("message") or a.get("alarm_id") or aid,
                "raised_at": a.get("raised_at"),
                "updated_at": a.get("updated_at"),
                "acknowledged_by": a.get("acknowledged_by"),
                "acknowledged_at": a.get("acknowledged_at"),
                "escalation": _escalation(a.get("escalation"), cfg),
                "protocol": a.get("protocol"),
                "actions": alarm_actions(a),
                "deliveries": _deliveries(model, a.get("occurrence")),
            }
        )
    out.sort(key=_rank)
    return out


def _deliveries(model: SuiteModel, occurrence: Any) -> list[dict[str, Any]]:
    """Each page/message of this occurrence with its newest state, in ladder order."""
    pages = model.deliveries.get(occurrence) if isinstance(occurrence, str) else None
    if not pages:
        return []
    return sorted(
        (dict(p) for p in pages.values()), key=lambda p: (p.get("step") or 0, str(p.get("recipient")))
    )


def _escalation(esc: Any, cfg) -> dict[str, Any] | None:
    if not isinstance(esc, dict):
        return None
    role = esc.get("role")
    ladder = cfg.ladders.get(esc.get("ladder")) if esc.get("ladder") else None
    return {
        **esc,
        "role_name": cfg.roles[role].name if role in cfg.roles else role,
        "steps": len(ladder.steps) if ladder else None,
    }


def _label(a: dict[str, Any]) -> str:
    t = a.get("type") or ""
    last = t.rsplit(".", 1)[-1] if t else (a.get("alarm_id") or "").rsplit(".", 1)[-1]
    return last.replace("_", " ").upper() or "ALARM"


def uptake_view(p: dict[str, Any] | None) -> dict[str, Any] | None:
    if not p:
        return None
    first = lambda *ks: next((p[k] for k in ks if p.get(k) is not None), None)  # noqa: E731
    started = first("started_at", "administered_at", "start")
    due = first("due_at", "ready_at", "scan_due_at", "ends_at", "end")
    remaining = first("remaining_s")
    if due is None and isinstance(remaining, (int, float)):
        base = parse_ts(p.get("ts")) or time.time()
        due = iso(base + remaining)
    duration = first("uptake_s", "duration_s")
    if due is None and isinstance(duration, (int, float)) and parse_ts(started):
        due = iso(parse_ts(started) + duration)
    return {
        "state": first("state", "phase"),
        "started_at": started,
        "due_at": due,
        "occupied": p.get("occupied") if isinstance(p.get("occupied"), bool) else None,
        "activity_mbq": first("activity_mbq", "measured_mbq"),
    }


def rooms(model: SuiteModel, cfg, alarms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    tiles = sorted(
        (a for a in cfg.areas.items() if a[1].kind in TILE_KINDS), key=lambda a: TILE_KINDS.index(a[1].kind)
    )
    for area_id, area in tiles:
        here = [a for a in alarms if a["location"] == area_id]
        clinical = [a for a in here if a["kind"] == "clinical"]
        call = None
        if clinical:
            top = clinical[0]  # alarms are already in priority-then-age order
            call = {
                "label": _label(model.alarms.get(top["alarm_id"], top)),
                "priority": top["priority"],
                "state": top["state"],
                "alarm_id": top["alarm_id"],
                "since": top["raised_at"],
                "acknowledged_by": top["acknowledged_by"],
                "accepted_by": (top["escalation"] or {}).get("accepted_by"),
            }
        others = [a for a in here if a["kind"] != "clinical"]
        up = uptake_view(model.uptake.get(area_id))
        occ = model.occupancy.get(area_id)
        occupied = up["occupied"] if up and up["occupied"] is not None else (occ or {}).get("occupied")
        rate = None
        for did, dev in sorted(model.devices.items()):
            if (dev.get("area") or dev.get("location")) != area_id:
                continue
            found = dose_rate_of(dev)
            if found is not None:
                rate = {
                    "value": found[0],
                    # None: the daemon withholds a faulty detector's reading (radiation rules)
                    "withheld": found[0] is None,
                    "unit": found[1],
                    "device": did,
                    "stale": bool(dev.get("stale")),
                    "comm": dev.get("comm"),
                    "ts": dev.get("ts"),
                    "published_at": dev.get("published_at"),
                }
                break
        out.append(
            {
                "id": area_id,
                "name": area.name,
                "kind": area.kind,
                "call": call,
                "alarms": len(here),
                "technical": len(others),
                "technical_priority": others[0]["priority"] if others else None,
                "occupied": occupied if isinstance(occupied, bool) else None,
                "occupied_since": (occ or {}).get("since") if occupied else None,
                "uptake": up,
                "dose_rate": rate,
            }
        )
    return out


def device_view(did: str, d: dict[str, Any], cfg) -> dict[str, Any]:
    loc = d.get("location")
    return {
        "device_id": d.get("device_id") or did,
        "name": d.get("name") or did,
        "kind": d.get("kind"),
        "location": loc,
        "location_name": cfg.areas[loc].name if loc in cfg.areas else loc,
        "comm": d.get("comm"),
        "stale": bool(d.get("stale")) or d.get("comm") != "ok",
        "age_s": d.get("age_s"),
        "ts": d.get("ts"),
        "published_at": d.get("published_at"),
        "last_error": d.get("last_error"),
        "values": _short_values(d.get("values") or {}),
    }


def _short_values(values: dict[str, Any], limit: int = 10) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if len(out) >= limit:
            break
        if isinstance(v, dict):
            on = [name for name, x in v.items() if x is True]
            out[k] = ", ".join(on) if on else "none"
        elif isinstance(v, float):
            out[k] = round(v, 3)
        elif isinstance(v, (int, bool, str)) or v is None:
            out[k] = v if not isinstance(v, str) else v[:40]
    return out


def devices(model: SuiteModel, cfg) -> list[dict[str, Any]]:
    rows = [device_view(did, d, cfg) for did, d in model.devices.items()]
    order = {"lost": 0, "connecting": 1}
    rows.sort(key=lambda r: (order.get(r["comm"], 2 if r["stale"] else 3), r["device_id"]))
    return rows


def _is_ups(did: str, d: dict[str, Any]) -> bool:
    return str(d.get("kind") or "").startswith("ups") or did.startswith("ups")


def power(model: SuiteModel, cfg) -> dict[str, Any]:
    upses = []
    mains = "unknown"
    for did, d in sorted(model.devices.items()):
        if not _is_ups(did, d):
            continue
        v = d.get("values") or {}
        row = device_view(did, d, cfg)
        row["values"] = {k: v[k] for k in UPS_VALUE_KEYS if k in v} or row["values"]
        upses.append(row)
        if row["stale"]:
            continue
        if d.get("power") in ("calibration", "self_test") and v.get("power_failure") is not True:
            # A battery test runs on battery with mains present (the UPS rules judged mains good).
            mains = "mains" if mains == "unknown" else mains
            continue
        if v.get("on_battery") is True or v.get("power_failure") is True:
            mains = "battery"
        elif mains == "unknown" and (v.get("on_battery") is False or v.get("online") is True):
            mains = "mains"
    return {"ups": upses, "mains": mains, "shutdown": shutdown_view(model.shutdown)}


def shutdown_view(p: dict[str, Any] | None) -> dict[str, Any] | None:
    if not p:
        return None
    steps_in = p.get("steps") or p.get("hosts") or p.get("targets")
    steps: list[dict[str, Any]] = []
    if isinstance(steps_in, list):
        for i, s in enumerate(steps_in):
            if isinstance(s, dict):
                steps.append(
                    {
                        "name": str(s.get("name") or s.get("id") or s.get("host") or f"step {i + 1}"),
                        "state": str(s.get("state") or s.get("status") or "pending"),
                    }
                )
            else:
                steps.append({"name": str(s), "state": "pending"})
    elif isinstance(steps_in, dict):
        steps = [
            {"name": str(k), "state": str(v.get("state") if isinstance(v, dict) else v)}
            for k, v in steps_in.items()
        ]
    done = sum(1 for s in steps if s["state"].lower() in DONE_STEP)
    state = str(p.get("phase") or p.get("state") or "unknown")
    # Only a sequence under way is active; a finished one (completed, aborted) is history.
    active = state.lower() in ("running", "aborting", "active", "in_progress")
    return {
        "state": state,
        "active": active,
        "steps": steps,
        "done": done,
        "total": len(steps),
        "ts": p.get("ts"),
        "started_at": p.get("started_at"),
        "deadline": p.get("deadline") or p.get("shutdown_at"),
        "countdown_s": p.get("countdown_s"),
        "message": p.get("message") or p.get("reason"),
    }


def dose(model: SuiteModel, cfg, now: float | None = None) -> dict[str, Any]:
    tz = ZoneInfo(cfg.site.timezone)
    now = now if now is not None else model.clock()
    today = datetime.fromtimestamp(now, tz).date()
    midnight = datetime.combine(today, datetime.min.time(), tz).timestamp()

    def is_today(*keys, d):
        for k in keys:
            t = parse_ts(d.get(k))
            if t is not None:
                return datetime.fromtimestamp(t, tz).date() == today
        return False

    adm = [a for a in model.administrations.values() if is_today("administered_at", "ts", d=a)]
    total = 0.0
    by_rp: dict[str, dict[str, Any]] = {}
    outside = 0
    for a in adm:
        # Activity at injection: measured_mbq is the assay at calibration time, minutes earlier,
        # and F-18 loses ~10 % in 15 min, so comparing it with the prescription would cry wolf.
        given = a.get("administered_mbq", a.get("measured_mbq"))
        rp = str(a.get("radiopharmaceutical") or a.get("radionuclide") or "unknown")
        slot = by_rp.setdefault(rp, {"count": 0, "total_mbq": 0.0})
        slot["count"] += 1
        if isinstance(given, (int, float)):
            total += given
            slot["total_mbq"] = round(slot["total_mbq"] + given, 1)
        # The daemon's own tolerance check is the one truth; the board does not re-judge it.
        if any(c.get("check") == "tolerance" and c.get("ok") is False for c in a.get("checks") or ()):
            outside += 1
    adm.sort(key=lambda a: a.get("administered_at") or "")
    recent = [
        {
            "room": a.get("room"),
            "room_name": cfg.areas[a["room"]].name if a.get("room") in cfg.areas else a.get("room"),
            "at": a.get("administered_at"),
            "radiopharmaceutical": a.get("radiopharmaceutical"),
            "measured_mbq": a.get("administered_mbq", a.get("measured_mbq")),
            "prescribed_mbq": a.get("prescribed_mbq"),
        }
        for a in adm[-5:]
    ][::-1]
    studies = [s for s in model.studies.values() if is_today("study_at", "ts", "received_at", d=s)]
    dlp = [
        v
        for s in studies
        for k, v in {**s, **(s.get("ct") if isinstance(s.get("ct"), dict) else {})}.items()
        if "dlp" in k.lower() and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    summary = model.dose_summary if (model.dose_summary or {}).get("date") == today.isoformat() else None
    # Administrations are events, not retained: what happened before the board started (or
    # while it had no broker) is missing, and the page says so instead of showing a low count.
    complete = model.started_at <= midnight and (
        model.broker_lost_at is None or model.broker_lost_at < midnight
    )
    return {
        "date": today.isoformat(),
        "count": len(adm),
        "total_mbq": round(total, 1),
        "by_radiopharmaceutical": by_rp,
        "outside_tolerance": outside,
        "recent": recent,
        "studies": len(studies),
        "ct_dlp_total": round(sum(dlp), 1) if dlp else None,
        "complete": complete,
        "since": iso(max(model.started_at, model.broker_lost_at or 0)),
        "summary": None
        if summary is None
        else {
            "ts": summary.get("ts"),
            "administrations": summary.get("administrations"),
            "total_mbq": summary.get("total_administered_mbq"),
            "records_lost": summary.get("records_lost"),
            "with_failed_checks": summary.get("administrations_with_failed_checks"),
        },
    }


def health(model: SuiteModel, board) -> dict[str, Any]:
    st = model.status or {}
    return {
        "broker": model.broker,
        "broker_since": iso(model.broker_since),
        "daemon": model.daemon_state(board.status_stale_s),
        "status_ts": st.get("ts"),
        "status_seen_at": iso(model.status_seen) if model.status_seen else None,
        "reason": st.get("reason"),
        "since": st.get("since"),
        "version": st.get("version"),
        "journal_fault": st.get("journal_fault"),
        "backlog": st.get("backlog"),
        "open_alarms": st.get("open_alarms"),
        "stale_after_s": board.status_stale_s,
        "bad_messages": model.bad_messages,
    }


def all_sections(model: SuiteModel, cfg, board) -> dict[str, Any]:
    alarms = open_alarms(model, cfg)
    return {
        "health": health(model, board),
        "alarms": alarms,
        "rooms": rooms(model, cfg, alarms),
        "power": power(model, cfg),
        "devices": devices(model, cfg),
        "dose": dose(model, cfg),
        "trends": trends(model, cfg),
    }


# -- trends (issue 17 item 4) -----------------------------------------------------
def dose_levels(did: str, dev: dict[str, Any], cfg) -> dict[str, Any] | None:
    """The warning and alarm levels to draw: the site's configured ones, in the set now in force.

    The daemon publishes which set applies (``thresholds.set``: ``normal``, or ``occupied``
    while a patient is in the room); the levels come from the board's config, the same file
    the daemon reads. A monitor the config does not know falls back to the levels it publishes.
    """
    published = dev.get("thresholds") if isinstance(dev.get("thresholds"), dict) else {}
    set_name = "occupied" if published.get("set") == "occupied" else "normal"
    rc = None
    dcfg = cfg.devices.get(did) if hasattr(cfg, "devices") else None
    if dcfg is not None:
        rc = rules_for(dcfg, cfg)
    else:
        section = getattr(cfg, "radiation", None)
        area = dev.get("area") or dev.get("location")
        rc = section.areas.get(area) if section is not None and isinstance(area, str) else None
    if rc is not None:
        ts = rc.occupied if set_name == "occupied" and rc.occupied is not None else rc.normal
        return {"warning": ts.warning_usv_h, "alarm": ts.alarm_usv_h, "set": set_name, "source": "config"}
    warn, alarm = published.get("warning_usv_h"), published.get("alarm_usv_h")
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (warn, alarm)):
        return {"warning": warn, "alarm": alarm, "set": set_name, "source": "device"}
    return None


def _area_name(cfg, area: Any) -> Any:
    return cfg.areas[area].name if isinstance(area, str) and area in cfg.areas else area


def call_responses(model: SuiteModel, cfg, now: float) -> dict[str, Any]:
    """Today's (site time) clinical calls answered: press (alarm raised) -> accept."""
    tz = ZoneInfo(cfg.site.timezone)
    today = datetime.fromtimestamp(now, tz).date()
    midnight = datetime.combine(today, datetime.min.time(), tz).timestamp()
    rows = sorted(
        (
            r
            for r in model.trends.responses.values()
            if datetime.fromtimestamp(r["accepted"], tz).date() == today
        ),
        key=lambda r: r["pressed"],
    )
    secs = sorted(round(r["accepted"] - r["pressed"], 1) for r in rows)
    median = None
    if secs:
        mid = len(secs) // 2
        median = secs[mid] if len(secs) % 2 else round((secs[mid - 1] + secs[mid]) / 2, 1)
    # Accepts are events, not retained: like the doses, say since when they were counted.
    complete = model.started_at <= midnight and (
        model.broker_lost_at is None or model.broker_lost_at < midnight
    )
    return {
        "date": today.isoformat(),
        "day_start": iso(midnight),
        "count": len(rows),
        "median_s": median,
        "max_s": secs[-1] if secs else None,
        "calls": [
            {
                "room": r["room"],
                "room_name": _area_name(cfg, r["room"]),
                "pressed_at": iso(r["pressed"]),
                "accepted_at": iso(r["accepted"]),
                "seconds": round(r["accepted"] - r["pressed"], 1),
                "accepted_by": r["accepted_by"],
                "emergency": str(r.get("type") or "").endswith("emergency"),
            }
            for r in rows[-100:]  # a bounded payload; the count and statistics cover the whole day
        ],
        "complete": complete,
        "since": iso(max(model.started_at, model.broker_lost_at or 0)),
    }


def trends(model: SuiteModel, cfg, now: float | None = None) -> dict[str, Any]:
    now = now if now is not None else model.clock()
    dose_rate = []
    for did, s in sorted(model.trends.dose.items()):
        dev = s.device
        area = dev.get("area") or dev.get("location")
        dose_rate.append(
            {
                "device": did,
                "name": dev.get("name") or did,
                "area": area,
                "area_name": _area_name(cfg, area),
                "unit": s.unit,
                "levels": dose_levels(did, dev, cfg),
                **s.rate.view(now),
            }
        )
    ups = []
    for did, u in sorted(model.trends.ups.items()):
        if not u.shown(now):
            continue
        ups.append(
            {
                "device": did,
                "name": u.device.get("name") or did,
                "on_battery": u.on_battery,
                "battery_since": iso(u.battery_since) if u.battery_since is not None else None,
                "mains_back_at": iso(u.mains_back_at) if u.mains_back_at is not None else None,
                "charge_pct": u.charge.view(now),
                "runtime_s": u.runtime.view(now),
            }
        )
    return {
        "window_s": WINDOW_S,
        "stale_after_s": STALE_AFTER_S,
        "dose_rate": dose_rate,
        "ups": ups,
        "responses": call_responses(model, cfg, now),
    }
