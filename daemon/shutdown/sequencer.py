"""The safe-shutdown service: watches the UPS, starts, aborts and resumes the sequence.

Data flows one way: UPS driver -> reading -> UPS rules -> ``ctx.facts`` "power" ->
this service. The service never reads the UPS for monitoring; it only *commands* it
in the last step (through the device's driver, like a person's command would), and
confirms that command by reading the countdown back.

Everything the service decides is a journal event carrying the full sequence state
(``shutdown.*``); the route in ``messages.py`` derives the target commands and the
retained ``shutdown/state`` from those events. At start the newest snapshot is read
back and a sequence that was running resumes at the step it had reached.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from suitemon.daemon.alarms import Condition, iso
from suitemon.daemon.commands import CommandError
from suitemon.daemon.radiation.occupancy import FACT as OCCUPANCY_FACT
from suitemon.daemon.shutdown import messages
from suitemon.daemon.shutdown.config import ShutdownConfig
from suitemon.daemon.shutdown.messages import BadReply, parse_reply
from suitemon.daemon.shutdown.runner import SequenceRunner
from suitemon.daemon.shutdown.state import ABORTED, ACTIVE_PHASES, COMPLETED, RUNNING, SequenceState, restore
from suitemon.daemon.shutdown.triggers import TriggerWatch, estimated_runtime, mains_ok
from suitemon.daemon.tasks import TaskSet
from suitemon.daemon.ups.rules import POWER_FACT
from suitemon.drivers.base import Driver

log = structlog.get_logger("suitemon.shutdown")

TICK_S = 0.25
ACTIONS = ("start", "abort", "proceed", "status")


class ShutdownService:
    def __init__(self, ctx):
        self.ctx = ctx
        self.cfg: ShutdownConfig = ctx.cfg.shutdown
        self.watch = TriggerWatch(self.cfg.triggers)
        self.state = SequenceState.idle(self.cfg)
        self.power: dict[str, Any] | None = None
        self.mains_since: float | None = None
        self.runner = SequenceRunner(self, topics=ctx.topics, site=ctx.site, ups=self._ups_driver)
        self.tasks = TaskSet()

    def _ups_driver(self, device_id: str) -> Driver | None:
        runner = self.ctx.runners.get(device_id)
        return runner.driver if runner is not None else None

    # -- the journal is the memory ---------------------------------------------
    def record(self, type_: str, data: dict[str, Any] | None = None, *, actor: str = "system"):
        self.state.updated_at = iso(time.time())
        body = {**(data or {}), "sequence_id": self.state.sequence_id, "state": self.state.to_dict()}
        log.info(
            type_,
            sequence_id=self.state.sequence_id,
            **{k: v for k, v in (data or {}).items() if k not in ("command", "sequence_id", "event")},
        )
        return self.ctx.recorder.record(type_, body, actor=actor)

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
    ) -> None:
        self.ctx.engine.apply(
            Condition(
                alarm_id=f"shutdown.{cause}",
                type=f"shutdown.{cause}",
                present=present,
                priority=priority,
                kind=kind,
                source="shutdown",
                message=message or f"safe shutdown: {cause}",
                latching=latching,
                details=details,
            )
        )

    def occupied(self, area: str) -> bool:
        f = self.ctx.facts.get(OCCUPANCY_FACT, area)
        return bool(f and f.get("occupied"))

    def _on_occupancy(self, area: str, fact: dict[str, Any]) -> None:
        if not (fact and fact.get("occupied")):
            self.runner.on_area_free(area)
            if not any(self.occupied(s.area) for s in self.cfg.steps if s.kind == "occupancy"):
                self.alarm("patient_on_couch", False)

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        ctx = self.ctx
        ctx.facts.watch(POWER_FACT, self._on_power)
        ctx.facts.watch(OCCUPANCY_FACT, self._on_occupancy)
        if ctx.subscribe is not None:
            ctx.subscribe(messages.reply_filter(ctx.topics), self._on_reply)
        ctx.commands.register(
            "shutdown",
            self._command,
            required=("action",),
            description="safe shutdown: start | abort | proceed | status (needs confirm)",
        )
        restored, problems = restore(ctx.recorder.journal.events_of_type("shutdown."), self.cfg)
        if restored is not None and restored.phase in (*ACTIVE_PHASES, COMPLETED):
            self.state = restored
            self.record("shutdown.resumed", {"reason": "daemon restarted", "dropped_steps": problems})
            if restored.phase in ACTIVE_PHASES:
                self.tasks.spawn(self._run_sequence(), name="shutdown-sequence")
        else:
            self.record("shutdown.armed", {"reason": "daemon started"})
        self.tasks.spawn(self._tick_loop(), name="shutdown-tick")

    async def stop(self) -> None:
        # The state is in the journal: a running sequence resumes at the next start.
        await self.tasks.cancel_all(timeout=1.0)

    async def _run_sequence(self) -> None:
        phase = await self.runner.run()
        if phase in (COMPLETED, ABORTED):
            self.finished(phase)

    # -- inputs: power facts, ticks, replies, commands --------------------------------
    def _on_power(self, device: str, fact: dict[str, Any]) -> None:
        if device != self.cfg.ups:
            return
        self.power = fact
        if mains_ok(fact):
            if self.mains_since is None:
                self.mains_since = time.monotonic()
        else:
            self.mains_since = None
        self.evaluate()

    async def _tick_loop(self) -> None:
        # Time passing is an input too: a debounce ends, a hold-off ends, a UPS goes quiet.
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.evaluate()
            except Exception:
                log.exception("shutdown evaluation failed")

    def evaluate(self) -> None:
        now = time.monotonic()
        st = self.state
        if st.armed:
            fired = self.watch.update(self.power, now)
            if fired is not None:
                self.begin(fired)
        elif st.phase == RUNNING:
            if self.abort_due(now):
                self.runner.request_abort(f"mains back and stable for {self.cfg.hold_off_s:g} s")
            self.runner.check_budget(now)
        elif st.phase == COMPLETED and self.mains_stable(now):
            self.state = SequenceState.idle(self.cfg)
            self.watch.reset()
            self.record(
                "shutdown.armed", {"reason": f"mains stable for {self.cfg.hold_off_s:g} s after a shutdown"}
            )

    def mains_stable(self, now: float) -> bool:
        return self.mains_since is not None and now - self.mains_since >= self.cfg.hold_off_s

    def mains_back_pending(self) -> bool:
        """Mains has returned during a power-triggered sequence but is not stable yet."""
        trig = self.state.trigger or {}
        return bool(trig.get("power")) and self.mains_since is not None

    def abort_due(self, now: float) -> bool:
        trig = self.state.trigger or {}
        return bool(trig.get("power")) and not self.state.past_point_of_no_return and self.mains_stable(now)

    def runtime_left(self, now: float) -> float | None:
        p = self.power
        if not p or not p.get("on_battery"):
            return None
        return estimated_runtime(p, now)

    def begin(self, trigger: dict[str, Any], actor: str = "system") -> None:
        self.state = SequenceState.begin(self.cfg, trigger, iso(time.time()))
        self.watch.reset()
        log.warning("safe shutdown starting", trigger=trigger)
        self.record("shutdown.started", {"trigger": trigger}, actor=actor)
        self.alarm(
            "in_progress",
            True,
            f"Safe shutdown of the suite in progress ({trigger.get('detail')})",
            trigger=trigger.get("name"),
        )
        self.tasks.spawn(self._run_sequence(), name="shutdown-sequence")

    def finished(self, phase: str) -> None:
        """A sequence has ended (completed or aborted)."""
        self.alarm("in_progress", False)
        if phase == ABORTED:  # power is back; after a completed sequence it holds until the room is free
            self.alarm("patient_on_couch", False)
        if phase == ABORTED:
            self.watch.reset()

    def _on_reply(self, topic: str, payload: bytes) -> None:
        target = topic.rsplit("/", 1)[-1]
        try:
            body = parse_reply(payload)
        except BadReply as err:
            self._reject_reply(target, str(err), payload)
            return
        cid = body["correlation_id"]
        if cid.startswith("rehearsal-"):
            log.debug("rehearsal reply seen", target=target, correlation_id=cid)
            return
        problem = self.runner.on_reply(target, cid, body)
        if problem is not None:
            self._reject_reply(target, problem, payload)

    def _reject_reply(self, target: str, error: str, payload: bytes) -> None:
        self.ctx.metrics.inc("shutdown.replies_rejected")
        log.warning("shutdown reply rejected", target=target, error=error)
        text = payload[:200].decode("utf-8", errors="replace")
        self.ctx.recorder.record(
            "shutdown.reply.rejected",
            {"target": target[:64], "error": error, "payload": text},
            actor="system",
        )

    def _command(self, actor: str, body: dict[str, Any]) -> Any:
        action = body.get("action")
        if action not in ACTIONS:
            raise CommandError(f"action must be one of {', '.join(ACTIONS)}")
        if action == "status":
            return self.state.to_dict()
        if body.get("confirm") != self.ctx.site:
            raise CommandError(
                f"'{action}' needs an explicit confirmation: \"confirm\": \"{self.ctx.site}\" (the site id)"
            )
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise CommandError("reason must be a string")
        st = self.state
        if action == "start":
            if not self.cfg.triggers.manual:
                raise CommandError("manual start is disabled in [shutdown.triggers]")
            if not st.armed and st.phase != COMPLETED:
                raise CommandError(f"a sequence is already {st.phase}")
            self.begin(
                {
                    "name": "manual",
                    "detail": f"manual start by {actor}" + (f": {reason}" if reason else ""),
                    "by": actor,
                    "power": False,
                },
                actor=actor,
            )
            return {"sequence_id": self.state.sequence_id}
        if st.phase != RUNNING:
            raise CommandError(f"no sequence running (phase {st.phase})")
        if action == "abort":
            if st.past_point_of_no_return:
                raise CommandError("the sequence is past its point of no return and will complete")
            self.runner.request_abort(f"manual abort by {actor}" + (f": {reason}" if reason else ""), actor)
            return {"sequence_id": st.sequence_id, "aborting": True}
        held = self.runner.release(actor)
        if held is None:
            raise CommandError("no step is held")
        return {"sequence_id": st.sequence_id, "released": held}


def factory(ctx) -> ShutdownService:
    return ShutdownService(ctx)


__all__ = ["ShutdownService", "factory"]
