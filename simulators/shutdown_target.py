"""Shutdown targets on MQTT: the scanner, the workstations... as the sequencer sees them.

A :class:`TargetClient` subscribes to its own command and rehearsal topics
(``suitemon/<site>/shutdown/cmd/<target>``, ``.../rehearse/<target>``) and answers on
the ``reply_to`` topic the command names, quoting its correlation id, after a delay:
``done`` (mode "ack"), ``failed`` (mode "fail"), or not at all (mode "never").
A command seen again with a correlation id it already answered is answered again at
once and not carried out twice, as a real target must (the sequencer re-sends a step
after a restart). Tests use TargetClient directly; ``suitemon sim`` runs one per
``[shutdown.targets.*]`` entry whose ``sim`` table does not say ``enabled = false``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import structlog

from suitemon.daemon.mqtt import connect, make_client, mqtt_settings
from suitemon.simulators.base import SimError, Simulator

log = structlog.get_logger("suitemon.sim.shutdown_target")

MODES = ("ack", "fail", "never")


class TargetClient:
    def __init__(
        self,
        host: str,
        port: int,
        site: str,
        target: str,
        *,
        base: str = "suitemon",
        mode: str = "ack",
        delay_s: float = 0.0,
        protocol: str = "5",
        username: str | None = None,
        password: str | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.host, self.port, self.target = host, port, target
        self.root = f"{base}/{site}/shutdown"
        self.mode, self.delay_s = mode, float(delay_s)
        self.received: list[dict[str, Any]] = []  # every command, duplicates included
        self.answered: dict[str, dict[str, Any]] = {}  # correlation id -> reply sent
        self.lock = threading.Condition()
        self._subscribed = threading.Event()
        self._mcfg = mqtt_settings(host, port, protocol)
        self.client = make_client(
            self._mcfg, f"target-{target}-{os.getpid()}-{id(self):x}", username=username, password=password
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a, **k: self._subscribed.set()
        self.client.on_message = self._on_message
        self._timers: list[threading.Timer] = []

    @property
    def command_topic(self) -> str:
        return f"{self.root}/cmd/{self.target}"

    @property
    def reply_topic(self) -> str:
        return f"{self.root}/reply/{self.target}"

    def start(self, wait_s: float = 5.0) -> TargetClient:
        connect(self.client, self._mcfg, keepalive=10)
        self.client.loop_start()
        if wait_s > 0 and not self._subscribed.wait(wait_s):
            log.warning("shutdown target not subscribed yet; will keep trying", target=self.target)
        return self

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if not reason_code.is_failure:
            client.subscribe([(self.command_topic, 1), (f"{self.root}/rehearse/{self.target}", 1)])

    def _on_message(self, client, userdata, msg):
        try:
            cmd = json.loads(msg.payload)
            cid = cmd["correlation_id"]
            reply_to = cmd["reply_to"]
        except (ValueError, KeyError, TypeError):
            log.warning("shutdown target got a malformed command", target=self.target)
            return
        cmd["_topic"], cmd["_at"] = msg.topic, time.monotonic()
        with self.lock:
            self.received.append(cmd)
            previous = self.answered.get(cid)
            self.lock.notify_all()
        if previous is not None:
            self._publish(reply_to, previous)  # a duplicate: answer again, do not act again
            return
        if self.mode == "never":
            return
        reply = {
            "correlation_id": cid,
            "status": "done" if self.mode == "ack" else "failed",
            "detail": (
                f"rehearsal: would {cmd.get('command')}"
                if cmd.get("rehearsal")
                else f"{cmd.get('command')} {'done' if self.mode == 'ack' else 'failed'}"
            ),
        }
        timer = threading.Timer(self.delay_s, self._answer, (reply_to, cid, reply))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _answer(self, reply_to: str, cid: str, reply: dict[str, Any]) -> None:
        with self.lock:
            self.answered[cid] = reply
            self.lock.notify_all()
        self._publish(reply_to, reply)

    def _publish(self, topic: str, reply: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(reply), qos=1)

    def set(self, mode: str | None = None, delay_s: float | None = None) -> dict[str, Any]:
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}")
            self.mode = mode
        if delay_s is not None:
            self.delay_s = float(delay_s)
        return {"target": self.target, "mode": self.mode, "delay_s": self.delay_s}

    def reply_now(self, correlation_id: str, status: str = "done", detail: str | None = None) -> None:
        """Answer a command by hand (a late acknowledgement)."""
        with self.lock:
            cmd = next(c for c in self.received if c["correlation_id"] == correlation_id)
        self._answer(
            cmd["reply_to"],
            correlation_id,
            {"correlation_id": correlation_id, "status": status, "detail": detail or "answered by hand"},
        )

    def commands(self, *, rehearsal: bool | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.received if rehearsal is None or bool(c.get("rehearsal")) == rehearsal]

    def wait_for(self, pred, timeout: float = 10.0, what: str = "command"):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not (v := pred(self)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"target {self.target}: timed out after {timeout} s waiting for {what}; "
                        f"received {[c.get('command') for c in self.received]}"
                    )
                self.lock.wait(left)
            return v

    def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        self.client.disconnect()
        self.client.loop_stop()


class ShutdownTargetsSim(Simulator):
    """Every simulated target of a config, on one control name (``shutdown_targets``)."""

    def __init__(self, cfg):
        super().__init__("shutdown_targets", cfg)
        self.clients: dict[str, TargetClient] = {}
        m = cfg.mqtt
        password = m.password_file.read_text().strip() if m.password_file else None
        for tid, t in cfg.shutdown.targets.items():
            opts = dict(t.sim)
            if opts.get("enabled", True) is False:
                continue
            self.clients[tid] = TargetClient(
                m.host,
                m.port,
                cfg.site.id,
                tid,
                base=m.base_topic,
                mode=opts.get("mode", "ack"),
                delay_s=opts.get("ack_delay_s", 1.0),
                protocol=m.protocol,
                username=m.username,
                password=password,
            )
        self.actions.update({"set": self._set, "received": self._received, "list": self._list})

    async def start(self) -> None:
        for c in self.clients.values():
            c.start(wait_s=0)
        log.info("shutdown targets simulated", targets=sorted(self.clients))

    async def stop(self) -> None:
        for c in self.clients.values():
            c.stop()

    def _client(self, target: str) -> TargetClient:
        c = self.clients.get(target)
        if c is None:
            raise SimError(
                f"no simulated shutdown target '{target}'; have: {', '.join(sorted(self.clients))}"
            )
        return c

    def _set(self, target: str, mode: str | None = None, delay_s: float | None = None) -> dict[str, Any]:
        try:
            return self._client(target).set(mode, delay_s)
        except ValueError as err:
            raise SimError(str(err)) from None

    def _received(self, target: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in c.items() if not k.startswith("_")} for c in self._client(target).commands()
        ]

    def _list(self) -> dict[str, Any]:
        return {
            t: {"mode": c.mode, "delay_s": c.delay_s, "received": len(c.received)}
            for t, c in self.clients.items()
        }


def from_config(cfg) -> ShutdownTargetsSim | None:
    if getattr(cfg, "shutdown", None) is None or not cfg.shutdown.targets:
        return None
    sim = ShutdownTargetsSim(cfg)
    return sim if sim.clients else None
