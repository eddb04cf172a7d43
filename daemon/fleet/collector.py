"""``suitemon fleet run``: every site's events, from the central cluster into PostgreSQL, once each.

A message is acknowledged to the broker (manual PUBACK) only after the transaction holding it has
committed, so a collector killed, a node lost or PostgreSQL stopped leaves the message with the
cluster, which delivers it again; (site, event_id) makes the second copy a no-op. The collector
rotates through the cluster's nodes when its node goes away; its MQTT session (persistent,
replicated by JetStream) follows it.
"""

from __future__ import annotations

import json
import os
import queue
import ssl
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as paho
import psycopg
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from suitemon.daemon.fleet.config import FleetConfig, read_secret
from suitemon.daemon.fleet.store import NotAnEvent, Row, Store, parse_event

log = structlog.get_logger("suitemon.fleet")


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Counters:
    received: int = 0
    skipped: int = 0  # other collectors' sites
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    db_errors: int = 0
    connects: int = 0
    lags: list[float] = field(default_factory=list)  # journal ts -> committed, seconds (last batch)


@dataclass(frozen=True)
class Delivery:
    gen: int  # which connection it came on: a PUBACK is only meaningful on that one
    mid: int
    qos: int
    topic: str
    payload: bytes


class Collector:
    def __init__(self, cfg: FleetConfig):
        self.cfg = cfg
        self.id = cfg.collector.id
        self.status_topic = f"{cfg.base_topic}/fleet/status/{self.id}"
        # One wildcard subscription whatever the site list: NATS 2.9 delivers a session with several
        # topic filters at under 100 events/s (measured: docs/fleet.md), one filter at thousands.
        # A collector with a site list acknowledges the other sites' events unread: each collector
        # has its own session, so what it skips stays queued for the collector that owns it.
        self.topics = [f"{cfg.base_topic}/+/event"]
        self.mine = None if "+" in cfg.mqtt.sites else frozenset(cfg.mqtt.sites)
        self.inbox: queue.Queue[Delivery] = queue.Queue()
        # PUBACKs owed, handed from the writer to the network thread: paho is driven by one thread only.
        self.acks: queue.Queue[Delivery] = queue.Queue()
        self.counters = Counters()
        self.gen = 0
        self.subscribed = False
        self.connected_to: str | None = None
        self.db_state = "unknown"
        self.since = iso_now()
        self.store = Store(cfg.database, self.id)
        self.client = self._client()

    # -- MQTT -------------------------------------------------------------------------------
    def _client(self) -> paho.Client:
        m = self.cfg.mqtt
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"suitemon-fleet-{self.id}",
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        c.username_pw_set(m.username, read_secret(m.password_file))
        if m.ca_file is not None:
            c.tls_set(ca_certs=str(m.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.will_set(
            self.status_topic,
            json.dumps(self._status("offline", reason="connection lost")),
            qos=1,
            retain=True,
        )
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = lambda *a, **k: log.warning("cluster link lost", node=self.connected_to)
        return c

    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc.is_failure:
            log.error("cluster refused the collector", node=self.connected_to, reason=str(rc))
            return
        self.counters.connects += 1
        log.info("connected to the cluster", node=self.connected_to, session_present=flags.session_present)
        # Subscribing again on a resumed session is harmless and covers a session the cluster lost.
        self.subscribed = False
        client.subscribe([(t, 1) for t in self.topics])
        self._publish_status()

    def _on_subscribe(self, client, userdata, mid, reason_codes, props=None):
        refused = [t for t, rc in zip(self.topics, reason_codes, strict=True) if rc.is_failure]
        if refused:  # a collector that hears nothing must not look healthy
            log.error("cluster refused the subscription: check the account's permissions", topics=refused)
        self.subscribed = not refused
        self._publish_status()

    def _on_message(self, client, userdata, msg):
        parts = msg.topic.split("/")
        if self.mine is not None and len(parts) == 3 and parts[1] not in self.mine:
            self.counters.skipped += 1
            if msg.qos > 0:
                client.ack(msg.mid, msg.qos)
            return
        self.counters.received += 1
        self.inbox.put(Delivery(self.gen, msg.mid, msg.qos, msg.topic, msg.payload))

    def _status(self, state: str, **extra) -> dict:
        c = self.counters
        lags = sorted(c.lags)
        return {
            "state": state,
            "ts": iso_now(),
            "collector": self.id,
            "since": self.since,
            "pid": os.getpid(),
            "node": self.connected_to,
            "subscribed": self.subscribed,
            "database": self.db_state,
            "sites": self.cfg.mqtt.sites,
            "received": c.received,
            "skipped": c.skipped,
            "stored": c.stored,
            "duplicates": c.duplicates,
            "rejected": c.rejected,
            "db_errors": c.db_errors,
            "backlog": self.inbox.qsize(),
            "lag_p99_s": round(lags[int(0.99 * (len(lags) - 1))], 3) if lags else None,
            **extra,
        }

    def _publish_status(self, state: str = "online", **extra) -> None:
        self.client.publish(self.status_topic, json.dumps(self._status(state, **extra)), qos=1, retain=True)

    def _network(self, stop: threading.Event) -> None:
        servers = [(h, int(p)) for h, _, p in (s.rpartition(":") for s in self.cfg.mqtt.servers)]
        i, next_status = 0, 0.0
        while not stop.is_set():
            host, port = servers[i % len(servers)]
            self.connected_to = f"{host}:{port}"
            self.gen += 1
            try:
                self.client.connect(host, port, keepalive=self.cfg.mqtt.keepalive_s)
            except (OSError, ssl.SSLError) as e:
                log.warning("cluster node unreachable", node=self.connected_to, error=str(e))
                i += 1
                stop.wait(0.5 if i % len(servers) else 2.0)  # a pause after each full round
                continue
            while not stop.is_set():
                rc = self.client.loop(timeout=0.05)
                if rc != paho.MQTT_ERR_SUCCESS:
                    log.warning("cluster link ended", node=self.connected_to, rc=paho.error_string(rc))
                    break
                self._send_acks()
                if time.monotonic() >= next_status and self.client.is_connected():
                    self._publish_status()
                    next_status = time.monotonic() + self.cfg.collector.status_period_s
            i += 1  # the next node: the one just lost may be the one that is down

    def _send_acks(self) -> None:
        while True:
            try:
                d = self.acks.get_nowait()
            except queue.Empty:
                return
            if d.gen == self.gen:  # on a later connection the cluster delivers it again instead
                self.client.ack(d.mid, d.qos)

    # -- database ---------------------------------------------------------------------------
    def _take_batch(self, stop: threading.Event) -> list[Delivery]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.cfg.collector.batch_wait_s
        while len(batch) < self.cfg.collector.batch_max:
            left = deadline - time.monotonic()
            try:
                batch.append(self.inbox.get(timeout=left) if left > 0 else self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[Delivery], stop: threading.Event) -> bool:
        rows: dict[tuple[str, str], Row] = {}
        rejects = []
        for d in batch:
            try:
                r = parse_event(d.topic, d.payload, self.cfg.base_topic)
                rows.setdefault((r.site, r.event_id), r)
            except NotAnEvent as e:
                log.error("not an event: rejected", topic=d.topic, reason=str(e), size=len(d.payload))
                rejects.append((d.topic, str(e), d.payload))
        wait = 0.2
        while True:
            try:
                n = self.store.write(list(rows.values()), rejects)
                break
            except psycopg.Error as e:
                self.counters.db_errors += 1
                if self.db_state != "down":
                    log.error("database unavailable: holding acknowledgements", error=str(e).strip()[:300])
                self.db_state = "down"
                if stop.wait(wait):
                    return False  # unacknowledged: the cluster keeps them for the next collector run
                wait = min(wait * 2, self.cfg.collector.retry_max_s)
        if self.db_state != "ok":
            log.info("database available", backlog=self.inbox.qsize())
        self.db_state = "ok"
        now = time.time()
        c = self.counters
        c.stored += n
        c.duplicates += len(batch) - len(rejects) - n
        c.rejected += len(rejects)
        c.lags = [now - r.ts.timestamp() for r in rows.values()]
        for d in batch:
            if d.qos > 0:
                self.acks.put(d)
        return True

    def _writer(self, stop: threading.Event) -> None:
        while not stop.is_set():
            batch = self._take_batch(stop)
            if batch and not self._write(batch, stop):
                return

    # -- run ----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        log.info("collector starting", collector=self.id, servers=self.cfg.mqtt.servers, topics=self.topics)
        try:  # the schema first: a collector that cannot migrate should say so before subscribing
            self.store._conn()
            self.db_state = "ok"
        except psycopg.Error as e:
            self.db_state = "down"
            log.error("database unavailable at start: will retry", error=str(e).strip()[:300])
        writer = threading.Thread(target=self._writer, args=(stop,), name="fleet-writer", daemon=True)
        writer.start()
        try:
            self._network(stop)
        finally:
            stop.set()
            writer.join(10)
            if self.client.is_connected():
                self._publish_status("offline", reason="stopped")
                self.client.loop(0.5)
                self.client.disconnect()
            self.store.close()
        log.info(
            "collector stopped",
            stored=self.counters.stored,
            duplicates=self.counters.duplicates,
            rejected=self.counters.rejected,
        )
        return 0
