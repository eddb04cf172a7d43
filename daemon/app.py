"""Wiring: build the pieces from a validated config, run them, stop them cleanly.

Order at start: journal (integrity, migration) -> restore open alarms and escalations
-> MQTT link (publishes the backlog as soon as it connects) -> drivers and features.
Order at stop: drivers and features -> final events flushed -> offline status -> journal closed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from paho.mqtt.client import topic_matches_sub

from suitemon.daemon import __version__, kinds
from suitemon.daemon.alarms import AlarmEngine, iso
from suitemon.daemon.checkpoints import Checkpointer, load_or_create_signing_key
from suitemon.daemon.commands import Commands, register_core
from suitemon.daemon.config import SuiteConfig
from suitemon.daemon.context import Context
from suitemon.daemon.contract import CONTRACT_VERSION, Message, Topics, dumps, messages_for
from suitemon.daemon.devices import DeviceRunner, watch_ages
from suitemon.daemon.escalation import Escalator
from suitemon.daemon.events import Recorder
from suitemon.daemon.facts import Facts
from suitemon.daemon.health import SystemdWatch
from suitemon.daemon.journal import Event, open_journal
from suitemon.daemon.metrics import Metrics
from suitemon.daemon.mqtt import MqttLink
from suitemon.daemon.outbox import Outbox
from suitemon.daemon.pseudonym import load_or_create_key
from suitemon.daemon.sdnotify import Notifier, unset_environment, watchdog_timeout
from suitemon.daemon.tasks import TaskSet, bounded, in_daemon_thread
from suitemon.daemon.threads import LoopBridge
from suitemon.drivers.config import DeviceConfig

log = structlog.get_logger("suitemon.daemon")

STATUS_PERIOD_S = 5.0
# SIGTERM to exit: systemd waits TimeoutStopSec (10 s in the shipped unit); we promise 5 s.
STOP_BUDGET_S = 4.0
STOP_HARD_LIMIT_S = 4.8


class Daemon:
    def __init__(self, cfg: SuiteConfig, *, client_id: str | None = None):
        self.cfg = cfg
        self.client_id = client_id or cfg.mqtt.client_id or f"suitemon-{cfg.site.id}-{socket.gethostname()}"
        self.topics = Topics(cfg.mqtt.base_topic, cfg.site.id)
        self.tasks = TaskSet()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.journal_fault: str | None = None
        self._fault_since: str | None = None
        self.started_at = time.time()
        self.essential_tasks: dict[str, asyncio.Task[None]] = {}  # must run for ever (watchdog rule)
        self.watch: SystemdWatch | None = None
        self._reload_lock = asyncio.Lock()
        self._listeners: list[tuple[str, Callable[[str, bytes], Any]]] = []

    # -- status ----------------------------------------------------------
    def status_payload(self, state: str, reason: str | None = None) -> dict[str, Any]:
        p = {
            "state": state,
            "ts": iso(time.time()),
            "site": self.cfg.site.id,
            "version": __version__,
            "contract": CONTRACT_VERSION,
        }
        if reason:
            p["reason"] = reason
        if state == "online":
            ctx = self.ctx
            p.update(
                {
                    "since": iso(self.started_at),
                    "pid": os.getpid(),
                    "open_alarms": len(ctx.engine.alarms),
                    "backlog": self.outbox.backlog,
                    "journal_fault": self.journal_fault,
                    "devices": {
                        d: ("lost" if r.comm_lost else "stale" if r.stale() else "ok")
                        for d, r in ctx.runners.items()
                    },
                    "counters": self._counters(),
                    "tasks": len(asyncio.all_tasks()),
                }
            )
        return p

    def _counters(self) -> dict[str, int]:
        counters = dict(self.ctx.metrics.snapshot())
        dropped = getattr(getattr(self, "link", None), "dropped_oversize", 0)
        if dropped:  # only a broker that ignores our Maximum Packet Size (or MQTT 3.1.1) lets these through
            counters["mqtt.dropped_oversize"] = dropped
        return counters

    def publish_status(self) -> None:
        if getattr(self, "link", None) is not None and self.link.connected and hasattr(self, "ctx"):
            self.link.publish_json(self.topics.status, self.status_payload("online"), retain=True)

    # -- journal faults: shout without the journal -----------------------
    def _journal_fault_record(self, state: str, reason: str) -> dict[str, Any]:
        now = iso(time.time())
        return {
            "alarm_id": "daemon.journal_fault",
            "occurrence": self._fault_since or now,
            "type": "daemon.journal_fault",
            "priority": "high",
            "kind": "technical",
            "latching": False,
            "condition": "present" if state == "active" else "absent",
            "state": state,
            "source": "suitemon",
            "location": None,
            "raised_at": self._fault_since or now,
            "updated_at": now,
            "message": (
                f"suitemon cannot write its journal ({reason}). Alarms are held in memory and "
                "still published; free disk space on the state directory now."
            )
            if state == "active"
            else f"journal writable again after: {reason}",
            "details": {"state_dir": str(self.cfg.state.dir)},
        }

    def _on_journal_fault(self, reason: str | None) -> None:
        topic = self.topics.alarm("daemon.journal_fault")
        if reason is not None:
            # The journal cannot take this alarm, so it goes straight out (retained); the
            # incident itself is journaled once the disk accepts writes again.
            if self.journal_fault is None:
                self._fault_since = iso(time.time())
            self.journal_fault = reason
            self._publish_json(topic, self._journal_fault_record("active", reason), retain=True)
        elif self.journal_fault is not None:
            previous, self.journal_fault = self.journal_fault, None
            self._publish_json(topic, self._journal_fault_record("closed", previous), retain=True)
            self.recorder.record(
                "daemon.journal_fault",
                {"reason": previous, "since": self._fault_since, "until": iso(time.time())},
            )
            self._fault_since = None
        self.publish_status()

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        self.bridge = LoopBridge(loop)
        chain_key_file, checkpoint_key_file, checkpoint_file = cfg.journal.paths(cfg.state.dir)
        self.journal = open_journal(
            cfg.state.dir, cfg.state.synchronous, chain_key=load_or_create_key(chain_key_file)
        )
        plain_head = self.journal.start_keyed_segment()
        self.outbox = Outbox(self.journal, self.topics, cfg.site.id, window=cfg.mqtt.max_inflight)
        self.recorder = Recorder(
            self.journal,
            on_commit=self.outbox.wake,
            on_fault=self._on_journal_fault,
            on_uncommitted=self._publish_uncommitted,
        )
        self.outbox.request_flush = self.recorder.touch
        self.checkpoints = Checkpointer(
            self.journal,
            load_or_create_signing_key(checkpoint_key_file),
            checkpoint_file,
            cfg.site.id,
            committed=lambda: self.recorder.committed_seq,
            publish=lambda cp: self._publish_json(self.topics.checkpoint, cp, retain=True),
        )
        if plain_head is not None:
            # Migration: the plain SHA-256 segment ends with a signed checkpoint of its head.
            self.checkpoints.record_old_head(*plain_head)
            log.warning(
                "journal chain keyed from now on",
                plain_head_seq=plain_head[0],
                keyed_from=self.journal.keyed_from,
            )
        metrics = Metrics()
        engine = AlarmEngine(self.recorder, cfg)
        self.escalator = Escalator(engine, cfg)
        self.ctx = Context(
            cfg=cfg,
            recorder=self.recorder,
            engine=engine,
            topics=self.topics,
            metrics=metrics,
            facts=Facts(),
            publish_json=self._publish_json,
        )
        self.commands = self.ctx.commands = Commands(self.ctx)
        self.ctx.outbox = self.outbox
        register_core(self.commands, engine, self.recorder)
        if not any(r.commands for r in cfg.roles.values()):
            # Default deny: right, but a site upgrading without grants must hear it at once.
            log.warning(
                "NO ROLE GRANTS ANY COMMAND: every ack, reset, accept ... will be refused; "
                "add `commands = [...]` to [roles.<id>] (docs/broker.md)"
            )
        self.commands.register(
            "status",
            lambda actor, body: self.status_payload("online"),
            description="the daemon's status now, counters included (engineers, probes)",
        )
        engine.restore(self.journal.latest_per_alarm())

        will = Message(self.topics.status, dumps(self.status_payload("offline", "connection lost")), 1, True)
        self.link = MqttLink(
            cfg.mqtt,
            client_id=self.client_id,
            will=will,
            bridge=self.bridge,
            on_connect=self._on_connect,
            on_ack=self.outbox.on_ack,
            on_message=self._on_message,
            subscriptions=(self.topics.command_filter,),
        )
        self.outbox.link = self.link
        self.ctx.subscribe = self._subscribe
        self.link.start()

        for feature in kinds.with_field("service"):
            if feature.service_needs_section and getattr(cfg, feature.name, None) is None:
                continue
            if not feature.service:  # set on every row with_field("service") returns; narrowed for the type
                continue
            factory = kinds.load(feature.service)
            self.ctx.services[feature.name] = factory(self.ctx)
        for did, dev in cfg.devices.items():
            if dev.enabled:
                self.ctx.runners[did] = self.make_runner(did, dev)

        self.recorder.record(
            "daemon.started",
            {
                "version": __version__,
                "pid": os.getpid(),
                "open_alarms": len(engine.alarms),
                "backlog": self.journal.last_seq - self.journal.delivered_upto(),
            },
        )
        resumed = self.escalator.resume()
        for svc in self.ctx.services.values():
            await svc.start()
        for runner in self.ctx.runners.values():
            self.start_runner(runner)
        self.essential_tasks["age-watch"] = self.tasks.spawn(watch_ages(self.ctx.runners), name="age-watch")
        self.essential_tasks["status"] = self.tasks.spawn(self._status_loop(), name="status")
        self.checkpoints.take(force=True)
        self.essential_tasks["checkpoints"] = self.tasks.spawn(
            self.checkpoints.run(cfg.journal.checkpoint_period_s), name="checkpoints"
        )
        self._start_systemd_watch()
        self.ready.set()
        log.info(
            "suitemon running",
            site=cfg.site.id,
            devices=len(self.ctx.runners),
            open_alarms=len(engine.alarms),
            escalations_resumed=resumed,
            services=list(self.ctx.services),
        )

    def make_runner(self, did: str, dev: DeviceConfig) -> DeviceRunner:
        driver = kinds.driver_class(dev.kind)(did, dev)
        rules = kinds.rules_class(dev.kind)(did, dev, self.ctx)
        return DeviceRunner(did, dev, driver, rules, self.ctx)

    def start_runner(self, runner: DeviceRunner) -> None:
        runner.task = self.tasks.spawn(runner.run(), name=f"device:{runner.device_id}")

    def _start_systemd_watch(self) -> None:
        notifier = Notifier.from_environment()
        watchdog_s = watchdog_timeout()
        unset_environment()  # nothing we start may notify on our behalf
        if not notifier.enabled:
            return
        self.watch = SystemdWatch(self, notifier, watchdog_s)
        self.tasks.spawn(self.watch.run(), name="systemd-watch")

    async def reload(self, path: str) -> bool:
        """SIGHUP: apply a new configuration if it validates (see daemon/reload.py)."""
        from suitemon.daemon.reload import reload_config

        await self.ready.wait()
        async with self._reload_lock:
            if self.watch is not None:
                self.watch.reloading()
            ok = await reload_config(self, path)
            if self.watch is not None:
                self.watch.reloaded("reloaded" if ok else "reload REFUSED, previous configuration kept")
            self.publish_status()
            return ok

    def clear_retained(self, topic: str) -> None:
        if self.link.connected:
            self.link.publish(Message(topic, b"", 1, True))

    def _on_connect(self) -> None:
        self.publish_status()
        self.checkpoints.republish()
        for runner in self.ctx.runners.values():
            runner._published = None  # republish every device's retained state
            runner.publish_state()
        if self.journal_fault:
            self._publish_json(
                self.topics.alarm("daemon.journal_fault"),
                self._journal_fault_record("active", self.journal_fault),
                retain=True,
            )
        self.outbox.wake()

    def _subscribe(self, topic_filter: str, fn: Callable[[str, bytes], Any]) -> None:
        self._listeners.append((topic_filter, fn))
        self.link.add_subscription(topic_filter)

    def _on_message(self, topic: str, payload: bytes) -> None:
        for topic_filter, fn in self._listeners:
            if topic_matches_sub(topic_filter, topic):
                try:
                    fn(topic, payload)
                except Exception:  # a feature's bug must not stop the MQTT dispatch
                    log.exception("message handler failed", topic=topic)
                return
        self.tasks.spawn(self.commands.on_message(topic, payload), name="command")

    def _publish_json(self, topic: str, obj: Any, retain: bool = False) -> None:
        link = getattr(self, "link", None)
        if link is not None and link.connected:
            link.publish_json(topic, obj, retain=retain)

    def _publish_uncommitted(self, events: Iterable[Event]) -> None:
        """Journal fault: publish events from memory (untracked); the outbox re-sends them once durable."""
        link = getattr(self, "link", None)
        if link is None or not link.connected:
            return
        for ev in events:
            for m in messages_for(ev, self.topics, self.cfg.site.id):
                link.publish(m)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_PERIOD_S)
            self.publish_status()

    async def stop(self) -> None:
        """Bounded: every step has its share of STOP_BUDGET_S, so SIGTERM exits within 5 s.

        Order: timers and tasks, services and drivers (in parallel), the final event
        committed, what is due published, offline said, journal closed.
        """
        log.info("suitemon stopping")
        t0 = time.monotonic()
        if self.watch is not None:
            self.watch.stopping()
        self.escalator.cancel_all()
        await self.tasks.cancel_all(timeout=0.5)
        await bounded("service stop", [svc.stop() for svc in self.ctx.services.values()], 1.5)
        await bounded("driver close", [r.driver.close() for r in self.ctx.runners.values()], 0.5)
        self.recorder.record("daemon.stopped", {"reason": "stop requested"})
        self.recorder.flush()
        self.checkpoints.take()  # the final head, so nothing written since the last minute can vanish
        # Give the outbox a moment to drain what is due; the rest waits in the journal.
        deadline = min(time.monotonic() + 1.5, t0 + STOP_BUDGET_S - 1.0)
        # Polled, bounded: the backlog falls as acks arrive from paho's thread, with no event to wait on.
        while self.outbox.backlog and self.link.connected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        goodbye = Message(self.topics.status, dumps(self.status_payload("offline", "stopped")), 1, True)
        left = max(0.3, t0 + STOP_BUDGET_S - time.monotonic())
        await in_daemon_thread(lambda: self.link.stop(goodbye, timeout=left * 0.6), left, "mqtt-goodbye")
        self.recorder.flush()
        self.journal.close()
        log.info("suitemon stopped", took_s=round(time.monotonic() - t0, 2))

    async def run_until_stopped(self) -> None:
        await self.start()
        try:
            await self.stopping.wait()
        finally:
            _arm_exit_guard(STOP_HARD_LIMIT_S)
            await self.stop()


def _arm_exit_guard(seconds: float) -> None:
    """Last resort: if stopping hangs anyway, leave (exit 1) before systemd's SIGKILL.

    The journal is crash-safe (SQLite WAL), so leaving mid-step loses nothing committed.
    """

    def bail() -> None:
        log.error("stop did not finish in time; exiting hard", limit_s=seconds)
        os._exit(1)

    t = threading.Timer(seconds, bail)
    t.daemon = True
    t.start()
