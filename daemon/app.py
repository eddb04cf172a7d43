"""Wiring: build the pieces from a validated config, run them, stop them cleanly.

Order at start: journal (integrity, migration) -> restore open alarms and escalations
-> MQTT link (publishes the backlog as soon as it connects) -> drivers and features.
Order at stop: drivers and features -> final events flushed -> offline status -> journal closed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import structlog
from paho.mqtt.client import topic_matches_sub

from . import __version__, kinds
from .alarms import AlarmEngine, iso
from .commands import Commands, register_core
from .context import Context
from .contract import CONTRACT_VERSION, Message, Topics, dumps, messages_for
from .devices import DeviceRunner, watch_ages
from .escalation import Escalator
from .events import Recorder
from .facts import Facts
from .journal import open_journal
from .metrics import Metrics
from .mqtt import MqttLink
from .outbox import Outbox
from .tasks import TaskSet
from .threads import LoopBridge

log = structlog.get_logger("suitemon.daemon")

STATUS_PERIOD_S = 5.0


class Daemon:
    def __init__(self, cfg, *, client_id: str | None = None):
        self.cfg = cfg
        self.client_id = client_id or cfg.mqtt.client_id or f"suitemon-{cfg.site.id}-{socket.gethostname()}"
        self.topics = Topics(cfg.mqtt.base_topic, cfg.site.id)
        self.tasks = TaskSet()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.journal_fault: str | None = None
        self._fault_since: str | None = None
        self.started_at = time.time()
        self._listeners: list[tuple[str, Any]] = []

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
            p.update({
                "since": iso(self.started_at),
                "pid": os.getpid(),
                "open_alarms": len(ctx.engine.alarms),
                "backlog": self.outbox.backlog,
                "journal_fault": self.journal_fault,
                "devices": {d: ("lost" if r.comm_lost else "stale" if r.stale() else "ok")
                            for d, r in ctx.runners.items()},
                "counters": ctx.metrics.snapshot(),
                "tasks": len(asyncio.all_tasks()),
            })
        return p

    def publish_status(self) -> None:
        if getattr(self, "link", None) is not None and self.link.connected and hasattr(self, "ctx"):
            self.link.publish_json(self.topics.status, self.status_payload("online"), retain=True)

    # -- journal faults: shout without the journal -----------------------
    def _journal_fault_record(self, state: str, reason: str) -> dict[str, Any]:
        now = iso(time.time())
        return {"alarm_id": "daemon.journal_fault", "occurrence": self._fault_since or now,
                "type": "daemon.journal_fault", "priority": "high", "kind": "technical", "latching": False,
                "condition": "present" if state == "active" else "absent", "state": state,
                "source": "suitemon", "location": None, "raised_at": self._fault_since or now, "updated_at": now,
                "message": (f"suitemon cannot write its journal ({reason}). Alarms are held in memory and "
                            "still published; free disk space on the state directory now.")
                if state == "active" else f"journal writable again after: {reason}",
                "details": {"state_dir": str(self.cfg.state.dir)}}

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
            self.recorder.record("daemon.journal_fault", {"reason": previous, "since": self._fault_since,
                                                          "until": iso(time.time())})
            self._fault_since = None
        self.publish_status()

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        self.bridge = LoopBridge(loop)
        self.journal = open_journal(cfg.state.dir, cfg.state.synchronous)
        self.outbox = Outbox(self.journal, self.topics, cfg.site.id, window=cfg.mqtt.max_inflight)
        self.recorder = Recorder(self.journal, on_commit=self.outbox.wake, on_fault=self._on_journal_fault,
                                 on_uncommitted=self._publish_uncommitted)
        self.outbox.request_flush = self.recorder.touch
        metrics = Metrics()
        engine = AlarmEngine(self.recorder, cfg)
        self.escalator = Escalator(engine, cfg)
        self.ctx = Context(cfg=cfg, recorder=self.recorder, engine=engine, topics=self.topics,
                           metrics=metrics, facts=Facts(), publish_json=self._publish_json)
        self.commands = self.ctx.commands = Commands(self.ctx)
        register_core(self.commands, engine, self.recorder)
        engine.restore(self.journal.latest_per_alarm())

        will = Message(self.topics.status, dumps(self.status_payload("offline", "connection lost")), 1, True)
        self.link = MqttLink(
            cfg.mqtt, client_id=self.client_id, will=will, bridge=self.bridge,
            on_connect=self._on_connect, on_ack=self.outbox.on_ack,
            on_message=self._on_message,
            subscriptions=(self.topics.command_filter,),
        )
        self.outbox.link = self.link
        self.ctx.subscribe = self._subscribe
        self.link.start()

        for name, ref in kinds.SERVICES.items():
            section = kinds.SERVICE_SECTIONS.get(name)
            if section is not None and getattr(cfg, section, None) is None:
                continue
            factory = kinds.load(ref)
            self.ctx.services[name] = factory(self.ctx)
        for did, dev in cfg.devices.items():
            if not dev.enabled:
                continue
            driver = kinds.driver_class(dev.kind)(did, dev)
            rules = kinds.rules_class(dev.kind)(did, dev, self.ctx)
            self.ctx.runners[did] = DeviceRunner(did, dev, driver, rules, self.ctx)

        self.recorder.record("daemon.started", {"version": __version__, "pid": os.getpid(),
                                                "open_alarms": len(engine.alarms),
                                                "backlog": self.journal.last_seq - self.journal.delivered_upto()})
        resumed = self.escalator.resume()
        for svc in self.ctx.services.values():
            await svc.start()
        for runner in self.ctx.runners.values():
            runner.task = self.tasks.spawn(runner.run(), name=f"device:{runner.device_id}")
        self.tasks.spawn(watch_ages(self.ctx.runners), name="age-watch")
        self.tasks.spawn(self._status_loop(), name="status")
        self.ready.set()
        log.info("suitemon running", site=cfg.site.id, devices=len(self.ctx.runners),
                 open_alarms=len(engine.alarms), escalations_resumed=resumed,
                 services=list(self.ctx.services))

    def _on_connect(self) -> None:
        self.publish_status()
        for runner in self.ctx.runners.values():
            runner._published = None  # republish every device's retained state
            runner.publish_state()
        if self.journal_fault:
            self._publish_json(self.topics.alarm("daemon.journal_fault"),
                               self._journal_fault_record("active", self.journal_fault), retain=True)
        self.outbox.wake()

    def _subscribe(self, topic_filter: str, fn) -> None:
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

    def _publish_uncommitted(self, events) -> None:
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
        log.info("suitemon stopping")
        self.escalator.cancel_all()
        await self.tasks.cancel_all()
        for svc in self.ctx.services.values():
            try:
                await asyncio.wait_for(svc.stop(), 2.0)
            except Exception:
                log.exception("service did not stop cleanly")
        for runner in self.ctx.runners.values():
            try:
                await asyncio.wait_for(runner.driver.close(), 1.0)
            except Exception:
                log.debug("driver close failed at stop", device=runner.device_id)
        self.recorder.record("daemon.stopped", {"reason": "stop requested"})
        self.recorder.flush()
        # Give the outbox a moment to drain what is due; the rest waits in the journal.
        deadline = time.monotonic() + 1.5
        while self.outbox.backlog and self.link.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        goodbye = Message(self.topics.status, dumps(self.status_payload("offline", "stopped")), 1, True)
        await asyncio.get_running_loop().run_in_executor(None, self.link.stop, goodbye)
        self.recorder.flush()
        self.journal.close()
        log.info("suitemon stopped")

    async def run_until_stopped(self) -> None:
        await self.start()
        try:
            await self.stopping.wait()
        finally:
            await self.stop()
