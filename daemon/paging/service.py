"""The paging service: every ladder notification becomes pages on the ESPA 4.4.4 line.

It listens to durable ``alarm.notify`` events (so a page exists only for a journaled
notification) and queues one page per recipient that has a call address. One task owns the
line: it sends queued pages, and between them polls the paging system (status records, and a
heartbeat: ``link_lost_after`` unanswered polls = link down).

Safety rules (docs/paging.md, docs/decisions.md):
- A failed or unconfirmed page of the ladder's current step moves the ladder on at once
  (not on the failsafe step, which repeats on its own timer). A page queued while the link is
  down is unconfirmed.
- Link down while an emergency ladder pages through it: HIGH technical alarm ``paging.link``.
- Pages queued during an outage go out when the link returns, unless the alarm was accepted,
  acknowledged (non-emergency) or closed meanwhile: then they are ``cancelled``.
- Restart: pages are rebuilt from the journal (``alarm.notify`` events of open alarms and the
  ``paging.delivery`` states), so a page waiting in an outage survives a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import structlog

from suitemon.daemon.alarms import Condition
from suitemon.daemon.journal import Event
from suitemon.daemon.paging.pages import CHANNEL, EVENT, FINAL, Page
from suitemon.daemon.paging.plan import NIGHT_REASON, espa_page_id, night_suppressed
from suitemon.daemon.paging.text import display_text
from suitemon.daemon.paging.tracking import Tracker
from suitemon.drivers.espa444 import EspaError, call_records, encode_block
from suitemon.drivers.espa_link import EspaLink, LineSettings, LinkError

STOP_S = 2.0  # the paging line task gets this long to end at stop
log = structlog.get_logger("suitemon.paging")

LINK_ALARM = "paging.link"
LINK_ALARM_TYPE = "paging.link_down"
REOPEN_S = 1.0
RESTORE_WINDOW = 200_000  # journal events looked back at on start


class PagingService(Tracker):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.cfg = ctx.cfg.paging
        c = self.cfg
        self.link = EspaLink(
            LineSettings(
                port=c.serial_port,
                baudrate=c.baudrate,
                bytesize=c.bytesize,
                parity=c.parity,
                stopbits=c.stopbits,
                own_address=c.control_station_address,
                peer_address=c.paging_system_address,
                response_timeout_s=c.response_timeout_s,
                retries=c.retries,
            ),
            counters=ctx.metrics.counters,
        )
        self.queue: deque[Page] = deque()
        self.awaiting: list[tuple[float, Page]] = []  # (deadline, page) waiting for a call status
        self.link_up: bool | None = None
        self.misses = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._known: set[str] = set()
        ctx.recorder.subscribe(self._on_event)

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        self._restore()
        self._task = asyncio.create_task(self._run(), name="paging-line")
        self._task.add_done_callback(_report_death)

    async def stop(self) -> None:
        # Bounded: a line task that does not end on cancel must not hold the daemon's stop (it hung a
        # test run once); it is logged instead.
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=STOP_S)
            if not done:
                log.error("paging line task ignored cancellation at stop")
        await self.link.close()

    # -- notifications -> pages ------------------------------------------------------------
    def _on_event(self, ev: Event) -> None:
        if ev.type != "alarm.notify":
            return
        pages = self._pages_for(ev)
        for p, suppress in pages:
            self._enqueue(p, suppress=suppress)
        if pages and self.link_up is False:
            # The link is down: nobody's pocket will buzz. Unconfirmed -> the ladder moves on now.
            asyncio.get_running_loop().call_soon(self._move_on, pages[0][0], "page_unconfirmed")

    def _pages_for(self, ev: Event) -> list[tuple[Page, bool]]:
        """(page, suppressed) per recipient with a call address, as the notification planned them."""
        alarm = ev.data["alarm"]
        plan = ev.data.get("delivery")
        # Notifications journaled before plans existed: decide now, as the planner would.
        planned = {e["page_id"]: e["state"] for e in plan} if plan is not None else None
        night = night_suppressed(self.ctx.cfg, alarm) if planned is None else False
        at = self.ctx.cfg.alarm_types.get(alarm["type"])
        emergency = bool(at is not None and at.emergency)
        room = (alarm.get("protocol") or {}).get("room")
        if room is None and alarm.get("location"):
            area = self.ctx.cfg.areas.get(alarm["location"])
            room = area.name if area is not None else alarm["location"]
        text = display_text(alarm, room, self.cfg.message_width, self.cfg.emergency_word, emergency)
        out = []
        for rid in ev.data["recipients"]:
            address = self.cfg.recipients.get(rid)
            if address is None:
                continue  # reached by other channels (MQTT notify, board)
            page_id = espa_page_id(ev.event_id, rid)
            # An address added by a reload after the notification was planned is paged all the same.
            suppress = night if planned is None else planned.get(page_id) == "suppressed"
            out.append(
                (
                    Page(
                        page_id=page_id,
                        alarm_id=alarm["alarm_id"],
                        occurrence=alarm["occurrence"],
                        step=ev.data["step"],
                        role=ev.data["role"],
                        recipient=rid,
                        address=address,
                        priority=alarm["priority"],
                        text=text,
                        emergency=emergency,
                        kind=alarm["kind"],
                    ),
                    suppress,
                )
            )
        return out

    def _enqueue(self, p: Page, *, suppress: bool, restored: bool = False) -> None:
        if p.page_id in self._known:
            return
        self._known.add(p.page_id)
        if suppress:
            self._set(p, "suppressed", NIGHT_REASON)
            return
        if not restored:
            self._set(p, "queued")
        self.queue.append(p)
        self._wake.set()

    def _set(self, p: Page, state: str, reason: str | None = None, **extra: Any) -> None:
        super()._set(p, state, reason, **extra)
        if state in FINAL:
            self._known.discard(p.page_id)  # the listener never sees its notify again: keep memory bounded

    # -- the line ------------------------------------------------------------------------
    async def _run(self) -> None:
        next_poll = 0.0
        me = asyncio.current_task()
        while True:
            # Python 3.11's wait_for can swallow a cancel that lands as its inner wait completes
            # (gh-86296): the request is still counted, so honour it here or stop would wait forever.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            if not self.link.is_open:
                await self.link.close()
                try:
                    await self.link.open()
                except LinkError as err:
                    self._link_state(False, str(err))
                    await asyncio.sleep(REOPEN_S)
                    continue
                next_poll = 0.0
            try:
                if self.link_up and self.queue:
                    await self._send(self.queue.popleft())
                    continue
                self._expire_statuses()
                now = time.monotonic()
                if now >= next_poll:
                    await self._poll()
                    interval = self.cfg.poll_interval_s
                    if self.awaiting:
                        interval = min(interval, 0.25)
                    next_poll = time.monotonic() + interval
                    continue
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_poll - time.monotonic()))
                except TimeoutError:
                    pass
            except LinkError as err:
                self._link_state(False, str(err))
            except Exception as err:  # a bug here must not end paging: log it, count it, go on
                log.exception("paging line loop error", error=repr(err))
                self.ctx.metrics.inc("paging.loop_errors")
                await self.link.close()
                await asyncio.sleep(REOPEN_S)

    async def _send(self, p: Page) -> None:
        if not self._still_wanted(p):
            self._set(p, "cancelled", "alarm accepted, acknowledged or closed before the page went out")
            return
        c = self.cfg
        try:
            block = encode_block(
                "1",
                call_records(
                    p.address,
                    p.text,
                    beep=c.beeps[p.priority],
                    call_type=c.call_type,
                    transmissions=c.transmissions,
                    priority=c.priorities[p.priority],
                ),
            )
        except EspaError as err:  # config let through something the protocol cannot carry: say so loudly
            self._failed(p, f"cannot encode: {err}")
            return
        try:
            out = await self.link.send_block(block)
        except LinkError:
            self.queue.appendleft(p)  # never lost: it goes again when the line is back
            raise
        p.attempts += out.attempts
        if out.ok:
            self.misses = 0
            if c.status_returned:
                self._set(p, "sent", None, attempts=p.attempts)
                self.awaiting.append((time.monotonic() + c.status_timeout_s, p))
            else:
                self._set(p, "accepted", "acknowledged by the paging system", attempts=p.attempts)
            return
        if out.reason == "no_answer" and not out.sent:
            # Silence to every select: the far end is gone. The page waits for the link.
            self.misses = self.cfg.link_lost_after
            self._link_state(False, f"no answer to {out.attempts} selects")
            self.queue.appendleft(p)
            self._move_on(p, "page_unconfirmed")
            return
        self._failed(
            p,
            {
                "nak": "NAK from the paging system",
                "busy": "paging system busy",
                "no_answer": "no acknowledgement",
            }[out.reason]
            + f" after {out.attempts} attempts",
            attempts=p.attempts,
        )

    async def _poll(self) -> None:
        out = await self.link.poll()
        if out.answered:
            self.misses = 0
            self._link_state(True)
        else:
            self.misses += 1
            if self.misses >= self.cfg.link_lost_after:
                self._link_state(False, f"no answer to {self.misses} polls")
        for block in out.statuses:
            self._on_status(block)

    def _on_status(self, block) -> None:
        address, code, pager = block.get("1"), block.get("7"), block.get("8")
        if block.header != "2" or address is None or code is None:
            self.ctx.metrics.inc("paging.status_unusable")
            log.warning("status block without call address or call status", records=block.as_dict())
            return
        for i, (_, p) in enumerate(self.awaiting):
            if p.address == address:
                del self.awaiting[i]
                if code in self.cfg.accepted_call_status:
                    self._set(
                        p,
                        "accepted",
                        "delivered (call status)",
                        call_status=code,
                        pager_status=pager,
                        attempts=p.attempts,
                    )
                else:
                    self._failed(
                        p,
                        f"call status {code}: not delivered",
                        call_status=code,
                        pager_status=pager,
                        attempts=p.attempts,
                    )
                return
        self.ctx.metrics.inc("paging.status_unmatched")
        log.warning("call status for no page we await", address=address, call_status=code)

    def _expire_statuses(self) -> None:
        now = time.monotonic()
        due = [p for t, p in self.awaiting if t <= now]
        self.awaiting = [(t, p) for t, p in self.awaiting if t > now]
        for p in due:
            self._failed(
                p, f"no call status within {self.cfg.status_timeout_s:g} s (unconfirmed)", attempts=p.attempts
            )

    def _link_state(self, up: bool, reason: str | None = None) -> None:
        if up == self.link_up:
            return
        self.link_up = up
        engine = self.ctx.engine
        prio = "high" if _emergency_depends(self.ctx.cfg) else "medium"
        msg = (
            f"Paging link down ({reason}): pagers and DECT handsets get no alarms. "
            f"Check the paging system and the cable on {self.cfg.serial_port}."
        )
        engine.apply(
            Condition(
                alarm_id=LINK_ALARM,
                type=LINK_ALARM_TYPE,
                present=not up,
                priority=prio,
                kind="technical",
                source="paging",
                message=msg if not up else "paging link up",
                details={"port": self.cfg.serial_port, "reason": reason, "queued": len(self.queue)},
            )
        )
        log.error("paging link down", reason=reason) if not up else log.info(
            "paging link up", queued=len(self.queue)
        )
        if not up:
            # Pages already waiting are unconfirmed: their ladders move on at once.
            for p in list(self.queue):
                self._move_on(p, "page_unconfirmed")
        self._wake.set()

    # -- restart -------------------------------------------------------------------------
    def _restore(self) -> None:
        """Rebuild pages not finished before the last stop: the journal is the queue."""
        j = self.ctx.recorder.journal
        since = max(0, j.last_seq - RESTORE_WINDOW)
        last: dict[str, dict[str, Any]] = {}
        for ev in j.events_of_type(EVENT, since):
            if ev.data.get("channel", CHANNEL) == CHANNEL:
                last[ev.data["page_id"]] = ev.data
        open_ids = set(self.ctx.engine.alarms)
        n = 0
        for ev in j.events_of_type("alarm.notify", since):
            if ev.alarm_id not in open_ids:
                continue
            for p, suppress in self._pages_for(ev):
                d = last.get(p.page_id)
                if d is not None and d["state"] in FINAL:
                    self._known.add(p.page_id)
                    continue
                if d is not None:
                    p.attempts = d.get("attempts", 0)
                self._enqueue(p, suppress=suppress, restored=d is not None)
                n += 1
        for pid, d in last.items():
            if d["state"] not in FINAL and pid not in self._known:
                # Its alarm is closed: say the page will never go, rather than leave it open for ever.
                p = Page.from_data(d)
                self._known.add(pid)
                self._set(p, "cancelled", "alarm closed before the page went out (found at restart)")
        if n:
            log.warning("pages restored from the journal", pages=n)


def _report_death(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "PAGING LINE TASK DIED: no pages will go out",
            error=repr(task.exception()),
            exc_info=task.exception(),
        )


def _emergency_depends(cfg) -> bool:
    """Does any emergency ladder page somebody through this link?"""
    paged = set(cfg.paging.recipients)
    for at in cfg.alarm_types.values():
        if not at.emergency or at.ladder not in cfg.ladders:
            continue
        for step in cfg.ladders[at.ladder].steps:
            role = cfg.roles.get(step.role)
            if role is not None and paged & set(role.recipients):
                return True
    return False


def factory(ctx) -> PagingService:
    return PagingService(ctx)
