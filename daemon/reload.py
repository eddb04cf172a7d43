"""SIGHUP: re-read the configuration, apply what can change live, keep the rest, say which.

Applied live (the alarm engine and escalator read them when they need them):
``areas``, ``roles``, ``ladders``, ``protocols``, ``alarm_types`` and ``devices``
(limits, thresholds, poll periods, addresses, added and removed devices). A changed
device's runner is stopped and a new one started with the new settings; its
comm-lost state carries over so an open comm-lost alarm still clears when the device
answers. A removed device's open alarms are closed (nobody monitors them any more)
and its retained state topic is cleared.

Kept until a restart: ``site`` and ``mqtt`` (topic names, broker session), ``state``
(the journal in use), ``logging`` and every feature section (services such as the
shutdown sequencer hold state that must not be rebuilt under them). The
``config.reloaded`` event names what changed but was not applied.

Refused, keeping the old configuration whole: a file that does not validate, a
change whose live part does not fit the kept part, and removing a ladder that an
open alarm is escalating on. ``config.reload_failed`` carries every error with its
key path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from suitemon.daemon.alarms import AlarmRecord, Reset
from suitemon.daemon.config import ConfigError, ConfigIssue, SuiteConfig, load_config, parse_config
from suitemon.daemon.context import Context
from suitemon.daemon.devices import DeviceRunner
from suitemon.daemon.escalation import Escalator
from suitemon.drivers.config import DeviceConfig

log = structlog.get_logger("suitemon.reload")

LIVE_SECTIONS = frozenset({"areas", "roles", "ladders", "protocols", "alarm_types", "devices", "simulation"})
RUNNER_STOP_S = 1.0


class Reloadable(Protocol):
    """What a reload changes of the running daemon (app.Daemon, which imports this module lazily)."""

    cfg: SuiteConfig
    ctx: Context
    escalator: Escalator

    def clear_retained(self, topic: str) -> None: ...
    def make_runner(self, did: str, dev: DeviceConfig) -> DeviceRunner: ...
    def start_runner(self, runner: DeviceRunner) -> None: ...


@dataclass
class Plan:
    effective: SuiteConfig
    applied: list[str] = field(default_factory=list)
    restart_required: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)


def _enabled(cfg: SuiteConfig) -> dict[str, DeviceConfig]:
    return {did: dev for did, dev in cfg.devices.items() if dev.enabled}


def make_plan(
    old: SuiteConfig,
    new: SuiteConfig,
    running: set[str],
    open_alarms: Iterable[AlarmRecord],
    source: str | None = None,
) -> Plan:
    """Decide what a reload does; raise ConfigError when it must be refused."""
    applied: list[str] = []
    restart: list[str] = []
    for name in type(old).model_fields:
        if getattr(old, name) == getattr(new, name):
            continue
        (applied if name in LIVE_SECTIONS else restart).append(name)
    effective = new
    if restart:
        effective = new.model_copy(update={name: getattr(old, name) for name in restart})
        try:  # the live part must still fit the part kept from the old file
            effective = parse_config(effective.model_dump(), source)
        except ConfigError as err:
            raise ConfigError(
                [
                    ConfigIssue(i.path, f"{i.message} (with {', '.join(restart)} kept until a restart)")
                    for i in err.issues
                ],
                source,
            ) from None
    issues: list[ConfigIssue] = []
    for rec in open_alarms:
        esc = rec.escalation
        if esc is not None and esc.accepted_by is None and esc.ladder not in effective.ladders:
            issues.append(
                ConfigIssue(
                    f"ladders.{esc.ladder}",
                    f"removed while open alarm '{rec.alarm_id}' is "
                    "escalating on it; keep it until that alarm is accepted or closed",
                )
            )
    if issues:
        raise ConfigError(issues, source)
    wanted = _enabled(effective)
    old_devices = old.devices
    return Plan(
        effective=effective,
        applied=applied,
        restart_required=restart,
        added=sorted(d for d in wanted if d not in running),
        removed=sorted(d for d in running if d not in wanted),
        restarted=sorted(d for d in wanted if d in running and old_devices.get(d) != wanted[d]),
    )


async def stop_runner(runner: DeviceRunner) -> None:
    task = runner.task
    if task is not None:
        task.cancel()
        await asyncio.wait({task}, timeout=RUNNER_STOP_S)
    try:
        await asyncio.wait_for(runner.driver.close(), RUNNER_STOP_S)
    except Exception:
        log.warning("driver did not close cleanly on reload", device=runner.device_id)


async def apply_plan(daemon: Reloadable, plan: Plan) -> list[str]:
    """Switch the running daemon to the plan's configuration; returns alarms closed."""
    ctx = daemon.ctx
    cfg = plan.effective
    daemon.cfg = ctx.cfg = ctx.engine.cfg = daemon.escalator.cfg = cfg
    closed: list[str] = []
    for did in plan.removed:
        runner = ctx.runners.pop(did)
        await stop_runner(runner)
        for rec in [a for a in ctx.engine.alarms.values() if a.source == did]:
            ctx.engine.apply(Reset(rec.alarm_id, "system", "device removed from the configuration"))
            closed.append(rec.alarm_id)
        daemon.clear_retained(ctx.topics.device_state(did))
    for did in plan.restarted:
        old = ctx.runners[did]
        await stop_runner(old)
        new = daemon.make_runner(did, cfg.devices[did])
        # The open comm-lost alarm belongs to the device, not to the runner object.
        new.comm_lost, new.failures, new.last_error = old.comm_lost, old.failures, old.last_error
        ctx.runners[did] = new
        daemon.start_runner(new)
    for did in plan.added:
        runner = ctx.runners[did] = daemon.make_runner(did, cfg.devices[did])
        daemon.start_runner(runner)
    return closed


async def reload_config(daemon: Reloadable, path: str, trigger: str = "SIGHUP") -> bool:
    """Reload from ``path``; True if the new configuration (or its live part) is in use."""
    ctx = daemon.ctx
    try:
        new = load_config(path)
        plan = make_plan(daemon.cfg, new, set(ctx.runners), list(ctx.engine.alarms.values()), str(path))
    except ConfigError as err:
        errors = [{"path": i.path, "message": i.message} for i in err.issues]
        log.error(
            "configuration reload refused; the previous configuration stays in use",
            path=str(path),
            errors=[str(i) for i in err.issues],
        )
        ctx.recorder.record(
            "config.reload_failed",
            {
                "path": str(path),
                "trigger": trigger,
                "errors": errors,
                "kept": "previous configuration",
            },
        )
        return False
    closed = await apply_plan(daemon, plan)
    changed = bool(plan.applied or plan.restart_required)
    message = (
        "configuration unchanged"
        if not changed
        else (
            f"applied: {', '.join(plan.applied) or 'nothing'}"
            + (
                f"; changed but kept until `systemctl restart suitemon`: {', '.join(plan.restart_required)}"
                if plan.restart_required
                else ""
            )
        )
    )
    ctx.recorder.record(
        "config.reloaded",
        {
            "path": str(path),
            "trigger": trigger,
            "applied": plan.applied,
            "restart_required": plan.restart_required,
            "devices": {"added": plan.added, "removed": plan.removed, "restarted": plan.restarted},
            "closed_alarms": closed,
            "message": message,
        },
    )
    log.info(
        "configuration reloaded",
        path=str(path),
        applied=plan.applied,
        restart_required=plan.restart_required,
        added=plan.added,
        removed=plan.removed,
        restarted=plan.restarted,
    )
    return True
