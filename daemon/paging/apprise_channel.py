"""Other channels through apprise (e-mail, SMS gateways, Teams, ntfy, ...), with the same delivery tracking.

For roles such as on-call engineering or the radiation protection supervisor, who carry no pager.
``[messaging.recipients]`` maps a recipient id (as in ``[roles]``) to apprise URLs. Every ladder
notification to such a recipient is a delivery (``channel = "apprise"``): ``queued``, then
``accepted`` (every URL's service took it) or ``failed`` (any refused, or no answer within
``timeout_s``), which moves the ladder on at once like a failed page. An alarm accepted or closed
before the message goes is ``cancelled``.

URLs may carry credentials: they are never journaled or published; the delivery names only the
service and host (``mailto://smtp.example.org``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import urlsplit

import structlog
from pydantic import Field, StringConstraints

from suitemon.daemon.journal import Event
from suitemon.daemon.paging.pages import Page
from suitemon.daemon.paging.text import PRIORITY_WORD
from suitemon.daemon.paging.tracking import Tracker
from suitemon.drivers.config import Id, Strict

log = structlog.get_logger("suitemon.paging.apprise")

CHANNEL = "apprise"
Url = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9+.-]*://.+$")]


class MessagingConfig(Strict):
    timeout_s: float = Field(20.0, gt=0, le=300, description="a send not finished by then has failed")
    recipients: dict[Id, list[Url]] = Field(default_factory=dict, description="recipient id -> apprise URLs")


def check(cfg):
    known = {r for role in cfg.roles.values() for r in role.recipients}
    for rid, urls in cfg.messaging.recipients.items():
        if rid not in known:
            yield f"messaging.recipients.{rid}", f"'{rid}' is no role's recipient"
        if not urls:
            yield f"messaging.recipients.{rid}", "give at least one apprise URL"
    try:
        import apprise
    except ImportError:
        yield "messaging", "the apprise package is not installed (pip install 'suitemon[notify]')"
        return
    for rid, urls in cfg.messaging.recipients.items():
        for i, u in enumerate(urls):
            if apprise.Apprise.instantiate(u) is None:
                yield f"messaging.recipients.{rid}.{i}", f"apprise does not understand the URL {redact(u)!r}"


def page_id(event_id: str, recipient: str) -> str:
    return f"{event_id}/{recipient}@{CHANNEL}"


def redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def message(alarm: dict[str, Any], room: str | None) -> tuple[str, str]:
    """(title, body): the body carries the whole alarm and, for an emergency, the protocol."""
    prio = PRIORITY_WORD.get(alarm["priority"], alarm["priority"].upper())
    title = " ".join(p for p in (prio, room or "", alarm["message"]) if p)
    lines = [
        alarm["message"],
        f"Priority: {alarm['priority']}  Kind: {alarm['kind']}  Alarm: {alarm['alarm_id']}",
    ]
    if room:
        lines.append(f"Where: {room}")
    proto = alarm.get("protocol")
    if proto:
        lines.append(f"Call {proto.get('who')} on {proto.get('number')}; say: {proto.get('location')}")
        lines += [f"- {a}" for a in proto.get("first_actions", [])]
    lines.append("Accept or reject from the board or with cmd/<you>/accept.")
    return title, "\n".join(lines)


class AppriseChannel(Tracker):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.cfg = ctx.cfg.messaging
        self._tasks: set[asyncio.Task] = set()
        ctx.recorder.subscribe(self._on_event)

    async def start(self) -> None:
        """Messages left ``queued`` by a stop or crash go out now (or are cancelled if no longer wanted)."""
        from suitemon.daemon.paging.pages import EVENT, FINAL

        j = self.ctx.recorder.journal
        last: dict[str, dict[str, Any]] = {}
        for ev in j.events_of_type(EVENT, max(0, j.last_seq - 200_000)):
            if ev.data.get("channel") == CHANNEL:
                last[ev.data["page_id"]] = ev.data
        for d in last.values():
            if d["state"] in FINAL:
                continue
            p = Page.from_data(d)
            urls = self.cfg.recipients.get(p.recipient)
            if not urls:
                self._set(p, "cancelled", "recipient no longer has an apprise URL (found at restart)")
                continue
            rec = self.ctx.engine.alarms.get(p.alarm_id)
            body = message(rec.snapshot(), self._room(rec.snapshot()))[1] if rec is not None else p.text
            self._spawn(p, urls, p.text, body)

    def _spawn(self, p: Page, urls: list[str], title: str, body: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._send(p, urls, title, body), name=f"apprise:{p.recipient}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)

    def _on_event(self, ev: Event) -> None:
        if ev.type != "alarm.notify":
            return
        alarm = ev.data["alarm"]
        room = self._room(alarm)
        at = self.ctx.cfg.alarm_types.get(alarm["type"])
        title, body = message(alarm, room)
        for rid in ev.data["recipients"]:
            urls = self.cfg.recipients.get(rid)
            if not urls:
                continue
            p = Page(
                page_id=page_id(ev.event_id, rid),
                alarm_id=alarm["alarm_id"],
                occurrence=alarm["occurrence"],
                step=ev.data["step"],
                role=ev.data["role"],
                recipient=rid,
                address=", ".join(redact(u) for u in urls),
                priority=alarm["priority"],
                text=title,
                emergency=bool(at is not None and at.emergency),
                kind=alarm["kind"],
                channel=CHANNEL,
            )
            self._set(p, "queued")
            self._spawn(p, urls, title, body)

    def _room(self, alarm: dict[str, Any]) -> str | None:
        room = (alarm.get("protocol") or {}).get("room")
        if room is None and alarm.get("location"):
            area = self.ctx.cfg.areas.get(alarm["location"])
            room = area.name if area is not None else alarm["location"]
        return room

    async def _send(self, p: Page, urls: list[str], title: str, body: str) -> None:
        import apprise

        if not self._still_wanted(p):
            self._set(p, "cancelled", "alarm accepted, acknowledged or closed before the message went out")
            return
        ap = apprise.Apprise()
        for u in urls:
            ap.add(u)
        p.attempts = 1
        try:
            ok = await asyncio.wait_for(ap.async_notify(body=body, title=title), self.cfg.timeout_s)
        except TimeoutError:
            self._failed(p, f"no answer within {self.cfg.timeout_s:g} s", attempts=1)
            return
        except Exception as err:  # a plugin's bug is a failed delivery, never a dead daemon
            log.exception("apprise send failed", recipient=p.recipient)
            self._failed(p, f"error: {err!r}"[:200], attempts=1)
            return
        if ok:
            self._set(p, "accepted", "taken by every service", attempts=1)
        else:
            self._failed(p, "refused or unreachable (see the log for apprise's reason)", attempts=1)


def factory(ctx) -> AppriseChannel:
    return AppriseChannel(ctx)
