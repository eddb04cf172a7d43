"""Running one sequence: command each step, wait for its acknowledgement, abort or complete.

One task walks the steps in order. Each wait ends on the first of: the target's
reply, the step's deadline, an abort request (mains back before the point of no
return), the time budget running out (a non-critical step is dropped), or a person
releasing a held step. Everything that happens is a journal event with the state.

After a restart the walk starts again at the first step that is not finished: an
acknowledged step is never commanded again; a step that was waiting has its command
re-sent with the *same* correlation id (a target de-duplicates by it) and waits its
full timeout again, because its reply may have been sent while nobody listened.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from suitemon.daemon.alarms import iso, parse_iso
from suitemon.daemon.contract import Topics
from suitemon.daemon.shutdown.config import ShutdownConfig
from suitemon.daemon.shutdown.messages import command_payload
from suitemon.daemon.shutdown.state import (
    ABORTED,
    ABORTING,
    COMPLETED,
    DONE,
    FAILED,
    HELD,
    INTERRUPTED,
    OPEN_STATUSES,
    PENDING,
    RELEASED,
    RUNNING,
    SKIPPED,
    STARTED,
    TIMEOUT,
    SequenceState,
    StepState,
)
from suitemon.drivers.base import Driver, DriverError

log = structlog.get_logger("suitemon.shutdown")

UPS_RETRY_S = 0.5


class SequenceHost(Protocol):
    """What the runner needs of the service that owns it: the state, the journal, alarms, the world."""

    state: SequenceState
    cfg: ShutdownConfig

    def record(self, type_: str, data: dict[str, Any] | None = None, *, actor: str = "system") -> Any: ...

    def alarm(
        self,
        cause: str,
        present: bool,
        message: str = "",
        *,
        priority: str = "high",
        latching: bool = False,
        kind: str = "technical",
        **details: Any,
    ) -> None: ...

    def runtime_left(self, now: float) -> float | None: ...

    def mains_back_pending(self) -> bool: ...

    def occupied(self, area: str) -> bool: ...


class SequenceRunner:
    """Walks one sequence. ``ups(device_id)`` finds the UPS driver to command (None: not running here)."""

    def __init__(self, svc: SequenceHost, *, topics: Topics, site: str, ups: Callable[[str], Driver | None]):
        self.svc = svc
        self.topics = topics
        self.site = site
        self.ups = ups
        self._waiters: dict[str, asyncio.Future] = {}
        self._wake = asyncio.Event()
        self._abort: tuple[str, str] | None = None  # (reason, actor)
        self._released: dict[str, str] = {}  # step id -> actor

    @property
    def state(self):
        return self.svc.state

    @property
    def cfg(self):
        return self.svc.cfg

    # -- requests from the service (facts, commands) ---------------------------------
    def request_abort(self, reason: str, actor: str = "system") -> None:
        if self._abort is None and not self.state.past_point_of_no_return:
            self._abort = (reason, actor)
            self._wake.set()

    def release(self, actor: str) -> str | None:
        held = next((s for s in self.state.steps if s.status == HELD), None)
        if held is None:
            return None
        self._released[held.id] = actor
        self._wake.set()
        return held.id

    def on_reply(self, target: str, cid: str, body: dict[str, Any]) -> str | None:
        """A target's reply; returns why it is refused, or None."""
        found = self.state.by_correlation(cid)
        if found is None:
            return f"unknown correlation id '{cid[:64]}'"
        step, is_resume = found
        if step.target != target:
            return f"correlation id belongs to target '{step.target}', reply came from '{target}'"
        fut = self._waiters.get(cid)
        if fut is not None and not fut.done():
            fut.set_result(body)
            return None
        # Nobody waits: a late answer after a timeout, or a duplicate. Worth a journal line.
        self.svc.record(
            "shutdown.step.late_reply",
            {
                "step": step.id,
                "correlation_id": cid,
                "resume": is_resume,
                "status": body["status"],
                "detail": body.get("detail"),
            },
        )
        return None

    def check_budget(self, now: float) -> None:
        """Skip to the critical steps when the battery cannot last the remaining steps."""
        st = self.state
        if st.budget_mode:
            return
        runtime = self.svc.runtime_left(now)
        if runtime is None:
            return
        needed = self.needed_s()
        if runtime >= needed:
            return
        skipped = [s.id for s in st.steps if s.status in OPEN_STATUSES and not s.critical]
        st.budget_mode = True
        st.message = f"battery short ({runtime:.0f} s left): only the critical steps run"
        self.svc.record(
            "shutdown.budget",
            {
                "runtime_s": round(runtime, 1),
                "needed_s": round(needed, 1),
                "skipped": skipped,
                "message": f"{runtime:.0f} s of battery left, the remaining steps need up to {needed:.0f} s: "
                f"skipping to the critical steps" + (f" (dropping {', '.join(skipped)})" if skipped else ""),
            },
        )
        self._wake.set()

    def needed_s(self) -> float:
        """Worst case for the steps still to run: their timeouts, and the UPS's own delay."""
        total, now = 0.0, time.time()
        for s in self.state.steps:
            if s.status not in OPEN_STATUSES:
                continue
            c = self.cfg.step(s.id)
            if c is None:
                continue
            if s.status == STARTED and s.deadline:
                total += max(0.0, parse_iso(s.deadline) - now)
            elif s.status == PENDING:
                total += c.timeout_s
            if c.kind == "ups":
                total += self.cfg.ups_off_after_s()
        return total

    # -- the walk ----------------------------------------------------------------------
    async def run(self) -> str | None:
        """Walk the steps (or finish an abort); the phase it ended in, or None if an internal error stopped it."""
        try:
            if self.state.phase == ABORTING:
                await self._send_resumes()
            else:
                await self._walk()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("shutdown sequence failed")
            self.svc.alarm(
                "internal_error",
                True,
                f"Safe shutdown sequence stopped by an internal error: {err!r}",
                latching=True,
            )
            return None
        return self.state.phase

    async def _walk(self) -> None:
        st = self.state
        while (step := st.next_open()) is not None:
            c = self.cfg.step(step.id)
            assert c is not None
            if await self._abort_now():
                return
            if step.status == PENDING and not st.past_point_of_no_return:
                if await self._gate():
                    return
            self.check_budget(time.monotonic())
            if st.budget_mode and not step.critical and step.status == PENDING:
                step.status, step.detail, step.finished_at = SKIPPED, "time budget", iso(time.time())
                self.svc.record("shutdown.step.skipped", {"step": step.id, "reason": "time budget"})
                continue
            if not st.past_point_of_no_return and self.cfg.steps.index(c) >= self.cfg.pnr_index:
                st.past_point_of_no_return = True
                self.svc.record("shutdown.point_of_no_return", {"step": step.id})
            st.current_step = step.id
            if c.kind == "ups":
                await self._ups_step(step, c)
            elif c.kind == "occupancy":
                await self._occupancy_step(step, c)
            else:
                await self._command_step(step, c)
            if await self._abort_now():
                return
        st.current_step, st.phase, st.outcome, st.finished_at = None, COMPLETED, "completed", iso(time.time())
        st.message = (
            f"completed: the UPS switches {self._outlets_text()} and back on when mains returns"
            if st.ups_result
            else "completed, but the UPS did NOT confirm its outlet command: check it now"
        )
        self.svc.record(
            "shutdown.completed",
            {
                "ups": st.ups_result,
                "skipped": [s.id for s in st.steps if s.status == SKIPPED],
                "unacknowledged": [s.id for s in st.steps if s.status in (TIMEOUT, FAILED, RELEASED)],
            },
        )

    async def _gate(self) -> bool:
        """Before the point of no return, start no new step while mains is back but not
        yet stable: it either fails again (carry on) or holds (abort). True: aborted."""
        announced = False
        while self.svc.mains_back_pending() and not self.state.past_point_of_no_return:
            if not announced:
                announced = True
                self.state.message = (
                    f"paused: mains is back; the sequence aborts if it stays {self.cfg.hold_off_s:g} s"
                )
                self.svc.record(
                    "shutdown.paused",
                    {"reason": f"mains back; waiting {self.cfg.hold_off_s:g} s to see it stay"},
                )
            if await self._abort_now():
                return True
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 0.25)
            except TimeoutError:
                pass
        if announced and self.state.phase == RUNNING:
            self.state.message = "safe shutdown in progress: mains lost again"
            self.svc.record("shutdown.continued", {"reason": "mains lost again (or the UPS is not seen)"})
        return await self._abort_now()

    async def _abort_now(self) -> bool:
        if self._abort is None or self.state.past_point_of_no_return:
            return False
        await self._do_abort()
        return True

    # -- command steps ------------------------------------------------------------------
    def _send(self, step: StepState, c, *, resume: bool, event: str, **extra: Any) -> None:
        cid = step.resume_correlation_id if resume else step.correlation_id
        payload = command_payload(
            topics=self.topics,
            site=self.site,
            target=c.target,
            correlation_id=cid,
            sequence_id=self.state.sequence_id,
            step=step.id,
            command=c.resume if resume else c.command,
            args=c.resume_args if resume else c.args,
            timeout_s=c.timeout_s,
            deadline=None if resume else step.deadline,
            issued_at=iso(time.time()),
            resume=resume,
        )
        self.svc.record(
            event, {"step": step.id, "target": c.target, "correlation_id": cid, "command": payload, **extra}
        )

    async def _command_step(self, step: StepState, c) -> None:
        now = time.time()
        if step.status == PENDING:
            step.correlation_id = uuid.uuid4().hex
            step.status, step.started_at, step.commanded = STARTED, iso(now), True
            step.deadline = iso(now + c.timeout_s)
            self._send(step, c, resume=False, event="shutdown.step.started")
        else:  # resumed after a restart: the reply may have gone to nobody
            if step.status == STARTED:
                step.deadline = iso(now + c.timeout_s)
            self._send(step, c, resume=False, event="shutdown.step.resent")
        while True:
            outcome, reply = await self._wait(step, c)
            if self._settle(step, c, outcome, reply):
                return

    def _settle(self, step: StepState, c, outcome: str, reply: dict[str, Any] | None) -> bool:
        """Act on how a wait ended; False: keep waiting (the step is now or still held)."""
        now = time.time()
        took = round(now - parse_iso(step.started_at), 3) if step.started_at else None
        was_held = step.status == HELD
        if outcome == "abort":
            return True  # the walk sees the abort request next
        if outcome == "reply" and reply is not None and reply["status"] == "done":
            step.status, step.finished_at, step.detail = DONE, iso(now), reply.get("detail")
            self.svc.record(
                "shutdown.step.acked",
                {
                    "step": step.id,
                    "target": c.target,
                    "correlation_id": step.correlation_id,
                    "took_s": took,
                    "detail": reply.get("detail"),
                },
                actor=c.target,
            )
        elif outcome == "budget":
            step.status, step.finished_at, step.detail = SKIPPED, iso(now), "time budget"
            self.svc.record("shutdown.step.skipped", {"step": step.id, "reason": "time budget"})
        elif outcome == "released":
            actor = self._released.pop(step.id, "someone")
            step.status, step.finished_at, step.detail = RELEASED, iso(now), f"released by {actor}"
            self.svc.record("shutdown.step.released", {"step": step.id, "by": actor}, actor=actor)
        elif was_held:
            # A "failed" reply while held: journaled, and still held (only "done" or a person ends it).
            self.svc.record(
                "shutdown.step.failed",
                {
                    "step": step.id,
                    "target": c.target,
                    "correlation_id": step.correlation_id,
                    "took_s": took,
                    "policy": c.on_timeout,
                    "detail": (reply or {}).get("detail"),
                    "held": True,
                },
                actor=c.target,
            )
            return False
        else:
            failed = outcome == "reply"
            detail = (reply or {}).get("detail")
            self.svc.record(
                "shutdown.step.failed" if failed else "shutdown.step.timeout",
                {
                    "step": step.id,
                    "target": c.target,
                    "correlation_id": step.correlation_id,
                    "took_s": took,
                    "policy": c.on_timeout,
                    "detail": detail,
                },
                actor=c.target if failed else "system",
            )
            if c.on_timeout == "hold":
                # Wait here, without a deadline, for a late acknowledgement, a person's release,
                # the time budget or an abort; and say loudly that we are stuck.
                step.status, step.deadline = HELD, None
                self.state.message = f"held at step '{step.id}': {c.target} has not confirmed '{c.command}'"
                step.detail = detail or "no acknowledgement; holding"
                self.svc.record("shutdown.step.held", {"step": step.id, "target": c.target})
                self.svc.alarm(
                    "held",
                    True,
                    f"Safe shutdown held at step '{step.id}': {c.target} has not "
                    f"confirmed '{c.command}'. Check it, then send the shutdown 'proceed' command.",
                    step=step.id,
                )
                return False
            step.status, step.finished_at = (FAILED if failed else TIMEOUT), iso(now)
            step.detail = detail or ("target reported failure" if failed else "no acknowledgement in time")
        if was_held:
            self.state.message = "safe shutdown in progress"
            self.svc.alarm("held", False)
        return True

    async def _wait(self, step: StepState, c, *, resume: bool = False) -> tuple[str, dict[str, Any] | None]:
        cid = step.resume_correlation_id if resume else step.correlation_id
        assert cid is not None
        fut = self._waiters[cid] = asyncio.get_running_loop().create_future()
        if resume:
            left = c.timeout_s
        elif step.deadline is not None:
            left = max(0.0, parse_iso(step.deadline) - time.time())
        else:
            left = float("inf")  # held: no deadline
        deadline = time.monotonic() + left
        try:
            while True:
                self._wake.clear()
                if fut.done():
                    return "reply", fut.result()
                if not resume:
                    if self._abort is not None and not self.state.past_point_of_no_return:
                        return "abort", None
                    if self.state.budget_mode and not step.critical:
                        return "budget", None
                    if step.id in self._released:
                        return "released", None
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout", None
                woke = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait(
                        {fut, woke}, timeout=min(left, 3600), return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    woke.cancel()
        finally:
            self._waiters.pop(cid, None)

    # -- a patient on the couch ------------------------------------------------------------
    def on_area_free(self, area: str) -> None:
        """The occupancy service says ``area`` is free: an occupancy step waiting on it is done."""
        for s in self.state.steps:
            c = self.cfg.step(s.id)
            if c is not None and c.kind == "occupancy" and c.area == area and s.status in (STARTED, HELD):
                fut = self._waiters.get(s.correlation_id or "")
                if fut is not None and not fut.done():
                    fut.set_result({"status": "done", "detail": f"{area} marked free"})

    async def _occupancy_step(self, step: StepState, c) -> None:
        """Hold and announce while a patient is in the area (on the scanner couch): the scanner
        must not power down under them unseen. Ends when the area is marked free, a person
        releases it, its timeout policy says proceed, or the time budget drops it."""
        now = time.time()
        if step.status == PENDING:
            step.status, step.started_at, step.deadline = STARTED, iso(now), iso(now + c.timeout_s)
            step.correlation_id = f"occupancy-{uuid.uuid4().hex}"
        if not self.svc.occupied(c.area):
            step.status, step.finished_at, step.detail = DONE, iso(time.time()), f"no patient in {c.area}"
            self.svc.record(
                "shutdown.step.acked",
                {"step": step.id, "area": c.area, "occupied": False, "detail": step.detail},
            )
            return
        text = (
            f"Power failure: the safe shutdown waits for the patient in '{c.area}' (on the scanner couch) "
            "to be taken off before the scanner powers down. Take the patient off, then mark the room free "
            "(occupancy command) or send the shutdown 'proceed' command."
        )
        self.svc.record(
            "shutdown.step.started", {"step": step.id, "area": c.area, "occupied": True, "message": text}
        )
        self.svc.alarm("patient_on_couch", True, text, kind="clinical", area=c.area, step=step.id)
        while True:
            was_held = step.status == HELD
            outcome, reply = await self._wait(step, c)
            now = time.time()
            if outcome == "abort":
                return
            if outcome == "reply":
                step.status, step.finished_at, step.detail = DONE, iso(now), (reply or {}).get("detail")
                self.svc.record(
                    "shutdown.step.acked",
                    {"step": step.id, "area": c.area, "occupied": False, "detail": step.detail},
                )
                self.svc.alarm("patient_on_couch", False)
            elif outcome == "released":
                actor = self._released.pop(step.id, "someone")
                step.status, step.finished_at, step.detail = RELEASED, iso(now), f"released by {actor}"
                self.svc.record("shutdown.step.released", {"step": step.id, "by": actor}, actor=actor)
            elif outcome == "budget":
                step.status, step.finished_at, step.detail = (
                    SKIPPED,
                    iso(now),
                    "time budget; patient still in area",
                )
                self.svc.record(
                    "shutdown.step.skipped",
                    {"step": step.id, "reason": "time budget", "area": c.area, "occupied": True},
                )
            elif c.on_timeout == "hold":
                step.status, step.deadline = HELD, None
                step.detail = f"patient still in {c.area}; holding"
                self.state.message = f"held at step '{step.id}': a patient is still in {c.area}"
                self.svc.record("shutdown.step.held", {"step": step.id, "area": c.area})
                self.svc.alarm(
                    "held",
                    True,
                    f"Safe shutdown held at step '{step.id}': a patient is still in "
                    f"'{c.area}'. Take them off the couch, then mark the room free or send the "
                    "shutdown 'proceed' command.",
                    step=step.id,
                )
                continue
            else:
                step.status, step.finished_at, step.detail = TIMEOUT, iso(now), f"patient still in {c.area}"
                self.svc.record(
                    "shutdown.step.timeout",
                    {"step": step.id, "area": c.area, "occupied": True, "policy": "proceed"},
                )
            if was_held:
                self.state.message = "safe shutdown in progress"
                self.svc.alarm("held", False)
            return

    # -- the UPS ------------------------------------------------------------------------
    def _groups_arg(self) -> dict[str, int]:
        """{UPS group bit: off delay} for the groups the ups step commands."""
        return {g.ups_group: g.off_delay_s for g in self.cfg.ups_groups().values()}

    def _outlets_text(self) -> str:
        groups = self.cfg.ups_groups()
        if not groups:
            return f"its main outlet group off in {self.cfg.ups_step.outlet_delay_s} s"
        parts = [
            f"'{gid}' ({g.ups_group}) off in {g.off_delay_s} s"
            for gid, g in sorted(groups.items(), key=lambda kv: kv[1].off_delay_s)
        ]
        return "outlet groups " + ", ".join(parts)

    async def _ups_step(self, step: StepState, c) -> None:
        now = time.time()
        step.status, step.started_at, step.deadline = STARTED, iso(now), iso(now + c.timeout_s)
        groups = self._groups_arg()
        self.svc.record(
            "shutdown.step.started",
            {
                "step": step.id,
                "ups": self.cfg.ups,
                "outlet_delay_s": c.outlet_delay_s,
                "outlet_groups": groups or None,
                "message": f"commanding {self.cfg.ups}: {self._outlets_text()}, back on when mains returns",
            },
        )
        args = {"groups": groups} if groups else {"delay_s": c.outlet_delay_s}
        driver = self.ups(self.cfg.ups)
        deadline = time.monotonic() + c.timeout_s
        errors = 0
        while True:
            try:
                if driver is None:
                    raise DriverError(f"UPS '{self.cfg.ups}' is not running in this daemon")
                left = max(0.1, deadline - time.monotonic())
                result = await asyncio.wait_for(driver.command("shutdown_return", **args), left)
            except (TimeoutError, DriverError, OSError) as err:
                errors += 1
                text = f"{type(err).__name__}: {err}"
                if errors == 1:
                    self.svc.record("shutdown.step.retrying", {"step": step.id, "error": text})
                if time.monotonic() + UPS_RETRY_S >= deadline:
                    step.status, step.finished_at, step.detail = FAILED, iso(time.time()), text
                    self.svc.record(
                        "shutdown.step.timeout",
                        {
                            "step": step.id,
                            "ups": self.cfg.ups,
                            "attempts": errors,
                            "error": text,
                            "policy": "proceed",
                        },
                    )
                    self.svc.alarm(
                        "ups_unconfirmed",
                        True,
                        f"Safe shutdown: the UPS did not confirm the outlet "
                        f"shutdown-and-return ({text}). It will drop the load when the battery "
                        "is empty; check it now.",
                        latching=True,
                    )
                    return
                await asyncio.sleep(UPS_RETRY_S)
                continue
            self.state.ups_result = result
            step.status, step.finished_at = DONE, iso(time.time())
            step.detail = "countdown confirmed: " + ", ".join(
                f"{g} {r['countdown_s']} s"
                for g, r in (result.get("groups") or {"main_group": result}).items()
            )
            self.svc.record("shutdown.step.acked", {"step": step.id, "ups": self.cfg.ups, "result": result})
            return

    # -- abort ---------------------------------------------------------------------------
    async def _do_abort(self) -> None:
        assert self._abort is not None
        reason, actor = self._abort
        st = self.state
        for s in st.steps:
            if s.status == STARTED:
                s.status, s.detail, s.finished_at = INTERRUPTED, "aborted", iso(time.time())
            elif s.status == HELD:
                s.status, s.detail = INTERRUPTED, "aborted while held"
                self.svc.alarm("held", False)
            elif s.status == PENDING:
                s.status, s.detail = SKIPPED, "aborted"
        st.phase, st.abort_reason, st.current_step = ABORTING, reason, None
        st.message = f"aborting ({reason}): sending resume commands"
        todo = [s.id for s in reversed(st.steps) if s.commanded]
        self.svc.record("shutdown.aborted", {"reason": reason, "resuming": todo}, actor=actor)
        await self._send_resumes()

    async def _send_resumes(self) -> None:
        """Each commanded step gets its resume command, last first, each awaited."""
        st = self.state
        for s in reversed(st.steps):
            if not s.commanded or s.resume_status in ("done", "failed", "timeout", "none"):
                continue
            c = self.cfg.step(s.id)
            if c is None or not c.resume:
                s.resume_status = "none"
                continue
            if s.resume_correlation_id is None:
                s.resume_correlation_id = uuid.uuid4().hex
            s.resume_status = "sent"
            self._send(s, c, resume=True, event="shutdown.resume.sent")
            outcome, reply = await self._wait(s, c, resume=True)
            if outcome == "reply" and reply is not None:
                s.resume_status = "done" if reply["status"] == "done" else "failed"
                self.svc.record(
                    "shutdown.resume.acked" if s.resume_status == "done" else "shutdown.resume.failed",
                    {"step": s.id, "target": c.target, "detail": reply.get("detail")},
                    actor=c.target,
                )
            else:
                s.resume_status = "timeout"
                self.svc.record("shutdown.resume.timeout", {"step": s.id, "target": c.target})
            if s.resume_status != "done":
                self.svc.alarm(
                    "resume_unconfirmed",
                    True,
                    f"After an aborted shutdown, {c.target} did not "
                    f"confirm '{c.resume}'; check it is back in service.",
                    priority="medium",
                    latching=True,
                    step=s.id,
                )
        st.phase, st.outcome, st.finished_at = ABORTED, "aborted", iso(time.time())
        unconfirmed = [s.id for s in st.steps if s.resume_status in ("failed", "timeout")]
        st.message = f"aborted ({st.abort_reason}); armed again" + (
            f"; NOT confirmed back: {', '.join(unconfirmed)}" if unconfirmed else ""
        )
        self._abort = None
        self.svc.record(
            "shutdown.resumed_all",
            {
                "resumed": [s.id for s in st.steps if s.resume_status == "done"],
                "unconfirmed": [s.id for s in st.steps if s.resume_status in ("failed", "timeout")],
            },
        )
