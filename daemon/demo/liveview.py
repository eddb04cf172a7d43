"""The demo's live view: an ordinary MQTT subscriber drawing devices and alarms in the terminal.

It reads only what any display would read (retained state, alarm records, events),
so the demo also shows that the published contract is enough to build a display.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections import deque

from suitemon.daemon.mqtt import connect, make_client, mqtt_settings

PRIO_STYLE = {
    "high": "\033[1;97;41m HIGH \033[0m",
    "medium": "\033[1;30;43m MED  \033[0m",
    "low": "\033[1;30;46m LOW  \033[0m",
}


class LiveView:
    def __init__(self, host: str, port: int, base: str, site: str, protocol: str = "5"):
        self.root = f"{base}/{site}"
        self.lock = threading.Lock()
        self.devices: dict[str, dict] = {}
        self.alarms: dict[str, dict] = {}
        self.raised: set[str] = set()
        self.events: deque[dict] = deque(maxlen=5000)
        self.status: dict | None = None
        self.other: dict[str, dict] = {}
        mcfg = mqtt_settings(host, port, protocol)
        self.client = make_client(mcfg, f"suitemon-view-{id(self)}")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{self.root}/#", qos=1)
        self.client.on_message = self._message
        connect(self.client, mcfg, keepalive=10, blocking=True)
        self.client.loop_start()

    def _message(self, client, userdata, msg) -> None:
        rel = msg.topic[len(self.root) + 1 :]
        try:
            data = json.loads(msg.payload) if msg.payload else None
        except json.JSONDecodeError:
            return
        with self.lock:
            if rel == "status":
                self.status = data
            elif rel == "event" and data:
                self.events.append(data)
                if data.get("type") == "alarm.raised":
                    self.raised.add(data.get("alarm_id"))
            elif rel.startswith("alarm/"):
                aid = rel[len("alarm/") :]
                if data is None:
                    self.alarms.pop(aid, None)
                else:
                    self.alarms[aid] = data
                    if data.get("state") in ("active", "acknowledged"):
                        self.raised.add(aid)
            elif rel.startswith("device/") and rel.endswith("/state") and data:
                self.devices[data.get("device_id", rel)] = data
            elif data is not None and msg.retain:
                self.other[rel] = data

    # -- scenario observer ------------------------------------------------------
    def alarm(self, alarm_id: str):
        with self.lock:
            return self.alarms.get(alarm_id)

    def events_list(self) -> list[dict]:
        with self.lock:
            return list(self.events)

    def ever_raised(self, alarm_id: str) -> bool:
        with self.lock:
            return alarm_id in self.raised

    def command(self, actor: str, verb: str, args: dict) -> None:
        self.client.publish(f"{self.root}/cmd/{actor}/{verb}", json.dumps(args), qos=1)

    # -- drawing ----------------------------------------------------------------------
    def render(self, title: str = "") -> str:
        with self.lock:
            width = shutil.get_terminal_size((100, 30)).columns
            out = [f"\033[1m suitemon demo  {title}\033[0m".ljust(width)]
            st = self.status or {}
            state = st.get("state", "unknown")
            banner = "\033[1;97;41m" if state != "online" else "\033[1;30;42m"
            open_alarms = [a for a in self.alarms.values() if a.get("state") in ("active", "acknowledged")]
            # Counted from the alarm records as they arrive; the status payload is only refreshed every 5 s.
            out.append(
                f"{banner} daemon {state.upper()} \033[0m  backlog {st.get('backlog', '?')}  "
                f"open alarms {len(open_alarms)}"
            )
            out.append("")
            out.append("\033[1m DEVICES\033[0m")
            for did, d in sorted(self.devices.items()):
                flag = (
                    "\033[1;97;41m LOST  \033[0m"
                    if d.get("comm") == "lost"
                    else "\033[1;30;43m STALE \033[0m"
                    if d.get("stale")
                    else "\033[32m  ok   \033[0m"
                )
                vals = ", ".join(f"{k}={_short(v)}" for k, v in list(d.get("values", {}).items())[:6])
                out.append(f" {flag} {did:<18} {d.get('location') or ''!s:<10} {vals}"[: width + 20])
            out.append("")
            out.append("\033[1m ALARMS (open)\033[0m")
            open_alarms.sort(
                key=lambda a: (
                    {"high": 0, "medium": 1, "low": 2}.get(a.get("priority"), 3),
                    a.get("raised_at", ""),
                )
            )
            if not open_alarms:
                out.append("  none")
            for a in open_alarms[:15]:
                esc = a.get("escalation") or {}
                step = f" step {esc.get('step')}:{esc.get('role')}" if esc else ""
                ack = f" ack by {a.get('acknowledged_by')}" if a.get("state") == "acknowledged" else ""
                out.append(
                    f" {PRIO_STYLE.get(a.get('priority'), a.get('priority'))} "
                    f"{a.get('message', '')[: width - 40]}{step}{ack}"
                )
            out.append("")
            out.append("\033[1m RECENT EVENTS\033[0m")
            for e in list(self.events)[-8:]:
                out.append(
                    f"  {e.get('ts', '')[11:19]} {e.get('type', ''):<22} {e.get('alarm_id') or ''} "
                    f"{e.get('actor') if e.get('actor') != 'system' else ''}"[:width]
                )
            return "\n".join(out)

    def draw(self, title: str = "") -> None:
        sys.stdout.write("\033[H\033[2J" + self.render(title) + "\n")
        sys.stdout.flush()

    def open_alarms(self) -> list[dict]:
        with self.lock:
            return [a for a in self.alarms.values() if a.get("state") in ("active", "acknowledged")]

    def open_alarm_count(self) -> int:
        return len(self.open_alarms())

    def summary_line(self) -> str:
        alarms = self.open_alarms()
        with self.lock:
            lost = sum(1 for d in self.devices.values() if d.get("comm") == "lost")
            stale = sum(1 for d in self.devices.values() if d.get("stale"))
            st = (self.status or {}).get("state", "unknown")
            events = len(self.events)
        names = ", ".join(sorted(a.get("alarm_id", "?") for a in alarms)[:4])
        more = f" +{len(alarms) - 4}" if len(alarms) > 4 else ""
        return (
            f"[{time.strftime('%H:%M:%S')}] daemon {st}; devices {len(self.devices)} "
            f"(stale {stale}, lost {lost}); open alarms {len(alarms)}"
            + (f" ({names}{more})" if alarms else "")
            + f"; events {events}"
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        on = [k for k, x in v.items() if x is True]
        return "|".join(on) or "-"
    return str(v)[:12]


class _ObserverAdapter:
    """LiveView as a scenario observer (events() without clashing with the attribute)."""

    def __init__(self, view: LiveView):
        self.view = view

    def alarm(self, alarm_id):
        return self.view.alarm(alarm_id)

    def events(self):
        return self.view.events_list()

    def ever_raised(self, alarm_id):
        return self.view.ever_raised(alarm_id)
