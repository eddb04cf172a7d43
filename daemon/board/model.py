"""What the board knows about the suite: the latest MQTT messages, kept per topic.

Only published contract is read (status, alarm records, device states, events) plus
the feature topics the board has tiles for (``shutdown/state``, ``uptake/<room>``,
``dose/administration``, ``dose/study``). Each is optional: a tile whose topic never
arrives says "no data", it never invents a quiet value. ``views.py`` turns this store
into the sections the page draws.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog

from suitemon.daemon.board.trends import Trends, parse_ts

log = structlog.get_logger("suitemon.board.model")

# Sections a message can change; the server pushes only the sections that changed.
HEALTH, ALARMS, ROOMS, POWER, DEVICES, DOSE = "health", "alarms", "rooms", "power", "devices", "dose"
TRENDS = "trends"
MAX_TRACKED = 5000  # administrations/studies remembered per day: far above ~10 patients a day


def subscriptions(root: str) -> tuple[str, ...]:
    """The topics the board reads (explicit filters, so a narrow read ACL is enough)."""
    return tuple(
        f"{root}/{t}"
        for t in ("status", "alarm/+", "device/+/state", "event", "shutdown/state", "uptake/+", "dose/+")
    )


class SuiteModel:
    """The latest value of every topic the board shows. Single-threaded: the event loop only."""

    def __init__(self, root: str, *, clock=time.time):
        self.root = root
        self.clock = clock
        self.started_at = clock()
        self.broker = "connecting"
        self.broker_since = self.started_at
        self.broker_lost_at: float | None = None  # last time the board missed messages
        self.status: dict[str, Any] | None = None
        self.status_seen: float | None = None
        self.alarms: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.shutdown: dict[str, Any] | None = None
        self.uptake: dict[str, dict[str, Any]] = {}
        self.occupancy: dict[str, dict[str, Any]] = {}
        self.administrations: dict[str, dict[str, Any]] = {}
        self.studies: dict[str, dict[str, Any]] = {}
        self.dose_summary: dict[str, Any] | None = None  # the dispenser's own daily summary, when published
        # alarm occurrence -> page_id -> newest delivery state (pagers, DECT, apprise): docs/paging.md
        self.deliveries: dict[str, dict[str, dict[str, Any]]] = {}
        self.bad_messages = 0
        self.messages = 0
        # Kept across broker reconnects: history stays history, and the outage shows as a gap.
        self.trends = Trends()

    # -- broker link ------------------------------------------------------
    def on_broker(self, connected: bool) -> set[str]:
        now = self.clock()
        state = "connected" if connected else "disconnected"
        if state == self.broker:
            return set()
        self.broker, self.broker_since = state, now
        if connected:
            # Retained topics are delivered again on subscribe: start from them, so an alarm
            # closed (topic cleared) while we were away does not linger on the page.
            self.alarms.clear()
            self.devices.clear()
            self.uptake.clear()
            self.shutdown = None
            self.status, self.status_seen = None, None
        else:
            self.broker_lost_at = now
        return {HEALTH, ALARMS, ROOMS, POWER, DEVICES, DOSE, TRENDS}

    # -- messages ---------------------------------------------------------
    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> set[str]:
        """Store one message; return the sections it changed (empty when it changed nothing)."""
        if not topic.startswith(self.root + "/"):
            return set()
        rel = topic[len(self.root) + 1 :]
        self.messages += 1
        data: Any = None
        if payload:
            try:
                data = json.loads(payload)
            except (UnicodeDecodeError, json.JSONDecodeError):
                data = _BAD
            if data is _BAD or not isinstance(data, dict):
                self.bad_messages += 1
                log.warning("ignoring a message that is not a JSON object", topic=rel, size=len(payload))
                return set()
        parts = rel.split("/")
        if rel == "status":
            return self._status(data, retained)
        if parts[0] == "alarm" and len(parts) == 2:
            return self._keyed(self.alarms, parts[1], data, {ALARMS, ROOMS, HEALTH})
        if parts[0] == "device" and len(parts) == 3 and parts[2] == "state":
            if data is not None and not isinstance(data.get("values", {}), dict):
                # Every view reads values as an object: one such state would stop all page updates.
                self.bad_messages += 1
                log.warning("ignoring a device state whose values are not an object", topic=rel)
                return set()
            changed = self._keyed(self.devices, parts[1], data, {DEVICES, ROOMS, POWER})
            if data is not None and self.trends.on_device(
                parts[1], data, self.clock(), parse_ts(data.get("ts"))
            ):
                changed.add(TRENDS)
            return changed
        if rel == "shutdown/state":
            self.shutdown = data
            return {POWER}
        if parts[0] == "uptake" and len(parts) == 2:
            return self._keyed(self.uptake, parts[1], data, {ROOMS})
        if rel == "dose/administration" and data:
            record = next((data[k] for k in ("record", "data") if isinstance(data.get(k), dict)), data)
            return self._administration(record, data.get("event_id"))
        if rel == "dose/summary" and data:
            self.dose_summary = data
            return {DOSE}
        if rel == "dose/study" and data:
            return self._study(data)
        if rel == "event" and data:
            return self._event(data)
        return set()

    def _status(self, data: dict[str, Any] | None, retained: bool) -> set[str]:
        now = self.clock()
        self.status = data
        if data is None:
            self.status_seen = None
        elif retained:
            # An old message delivered on subscribe: it is as fresh as its timestamp says.
            ts = parse_ts(data.get("ts"))
            self.status_seen = min(now, ts) if ts is not None else None
        else:
            self.status_seen = now
        return {HEALTH}

    @staticmethod
    def _keyed(table: dict[str, Any], key: str, data: dict[str, Any] | None, sections: set[str]) -> set[str]:
        if data is None:
            if table.pop(key, None) is None:
                return set()
        else:
            table[key] = data
        return set(sections)

    def _event(self, ev: dict[str, Any]) -> set[str]:
        etype, data = ev.get("type"), ev.get("data")
        if not isinstance(data, dict):
            return set()
        if etype == "occupancy.changed" and isinstance(data.get("area"), str):
            self.occupancy[data["area"]] = {**data, "actor": ev.get("actor")}
            return {ROOMS}
        if etype == "dose.administered":
            return self._administration(data, ev.get("event_id"))
        if etype in ("dose.study", "dicom.study"):
            return self._study(data)
        if etype == "paging.delivery":
            return self._delivery(data, ev.get("seq"))
        if etype == "alarm.accepted":
            return {TRENDS} if self.trends.on_accepted(ev, self.clock()) else set()
        if etype == "alarm.notify":
            return self._unpaged(data, ev.get("event_id"), ev.get("seq"))
        return set()

    def _unpaged(self, data: dict[str, Any], event_id: Any, seq: Any) -> set[str]:
        """Recipients the notification reaches by no pager or message: shown, so nobody assumes a page."""
        plan, alarm = data.get("delivery"), data.get("alarm")
        if not isinstance(plan, list) or not isinstance(alarm, dict) or not isinstance(event_id, str):
            return set()
        changed: set[str] = set()
        for e in plan:
            if isinstance(e, dict) and e.get("state") == "none" and isinstance(e.get("recipient"), str):
                page = {
                    "page_id": f"{event_id}/{e['recipient']}",
                    "occurrence": alarm.get("occurrence"),
                    "recipient": e["recipient"],
                    "channel": None,
                    "state": "none",
                    "reason": "no pager or message address: told by the board and notify only",
                    "step": data.get("step"),
                }
                changed |= self._delivery(page, seq)
        return changed

    def _delivery(self, data: dict[str, Any], seq: Any) -> set[str]:
        occ, pid = data.get("occurrence"), data.get("page_id")
        if not isinstance(occ, str) or not isinstance(pid, str):
            return set()
        pages = self.deliveries.get(occ)
        if pages is None:
            pages = self._bounded(self.deliveries)[occ] = {}
        old = pages.get(pid)
        if old is not None and isinstance(seq, int) and isinstance(old.get("seq"), int) and old["seq"] > seq:
            return set()  # an older state delivered again: keep the newer one
        pages[pid] = {k: data.get(k) for k in ("recipient", "channel", "state", "reason", "step")} | {
            "seq": seq
        }
        return {ALARMS}

    def _administration(self, data: dict[str, Any], event_id: Any) -> set[str]:
        key = data.get("record_id") or event_id
        if not isinstance(key, (str, int)) or str(key) in self.administrations:
            return set()  # at-least-once delivery: the same record may come twice
        self._bounded(self.administrations)[str(key)] = data
        return {DOSE}

    def _study(self, data: dict[str, Any]) -> set[str]:
        key = (
            data.get("study_uid")
            or data.get("study_instance_uid")
            or data.get("event_id")
            or data.get("accession")
        )
        if not isinstance(key, (str, int)) or str(key) in self.studies:
            return set()
        self._bounded(self.studies)[str(key)] = data
        return {DOSE}

    @staticmethod
    def _bounded(table: dict[str, Any]) -> dict[str, Any]:
        while len(table) >= MAX_TRACKED:
            table.pop(next(iter(table)))
        return table

    # -- health of what we see -------------------------------------------
    def daemon_state(self, stale_after_s: float) -> str:
        if self.broker != "connected":
            return "unknown"
        if self.status is None:
            return "unknown"
        if self.status.get("state") != "online":
            return "offline"
        if self.status_seen is None or self.clock() - self.status_seen > stale_after_s:
            return "stale"
        return "online"


_BAD = object()
