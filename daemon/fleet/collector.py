"""``suitemon fleet run``: every site's events, from the central cluster's stream into PostgreSQL,
once each.

The cluster keeps each site's events in a JetStream stream (``stream.py``); every collector pulls
batches from the one durable consumer they share, so each message goes to one collector and more
collectors share the work. A message is acknowledged only after the transaction holding it has
committed: a collector killed, a node lost or PostgreSQL stopped leaves it unacknowledged, and the
cluster delivers it again after ``ack_wait`` (to any collector); (site, event_id) makes a second copy
a no-op. The status stays a retained MQTT message with a will, where the central desks read it.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import paho.mqtt.client as paho
import psycopg
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError

from suitemon.daemon.fleet.config import FleetConfig, central_client
from suitemon.daemon.fleet.store import NotAnEvent, Row, Store, parse_event
from suitemon.daemon.fleet.stream import MQTT_STREAM, StreamMissing, connect, ensure, topic_of

log = structlog.get_logger("suitemon.fleet")


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Counters:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    redelivered: int = 0  # delivered to a collector before: a dead collector's or an expired ack_wait
    db_errors: int = 0
    lags: list[float] = field(default_factory=list)  # journal ts -> committed, seconds (last batch)


def parse_batch(items: list[tuple[str, bytes]], base: str) -> tuple[list[Row], list[tuple[str, str, bytes]]]:
    """(subject, payload) pairs -> rows (first copy of each event) and rejects with their reasons."""
    rows: dict[tuple[str, str], Row] = {}
    rejects = []
    for subject, payload in items:
        topic = topic_of(subject)
        try:
            r = parse_event(topic, payload, base)
            rows.setdefault((r.site, r.event_id), r)
        except NotAnEvent as e:
            log.error("not an event: rejected", topic=topic, reason=str(e), size=len(payload))
            rejects.append((topic, str(e), payload))
    return list(rows.values()), rejects


class Collector:
    def __init__(self, cfg: FleetConfig):
        self.cfg = cfg
        self.id = cfg.collector.id
        self.status_topic = f"{cfg.base_topic}/fleet/status/{self.id}"
        self.counters = Counters()
        self.subscribed = False
        self.node: str | None = None
        self.backlog = 0  # fetched, not yet committed
        self.pending: int | None = None  # in the stream, not yet delivered to any collector
        self.db_state = "unknown"
        self.since = iso_now()
        self.store = Store(cfg.database, self.id)
        self.mqtt = self._status_client()

    # -- status over MQTT (a thread of its own: paho is driven by one thread) ---------------------
    def _status_client(self) -> paho.Client:
        c = central_client(self.cfg, f"suitemon-fleet-{self.id}")
        c.will_set(
            self.status_topic,
            json.dumps(self._status("offline", reason="connection lost")),
            qos=1,
            retain=True,
        )
        c.on_connect = lambda cl, u, f, rc, p=None: self._publish_status() if not rc.is_failure else None
        return c

    def _status(self, state: str, **extra: Any) -> dict[str, Any]:
        c = self.counters
        lags = sorted(c.lags)
        return {
            "state": state,
            "ts": iso_now(),
            "collector": self.id,
            "since": self.since,
            "pid": os.getpid(),
            "node": self.node,
            "subscribed": self.subscribed,
            "database": self.db_state,
            "stream": MQTT_STREAM,
            "consumer": self.cfg.stream.consumer,
            "received": c.received,
            "stored": c.stored,
            "duplicates": c.duplicates,
            "rejected": c.rejected,
            "redelivered": c.redelivered,
            "db_errors": c.db_errors,
            "backlog": self.backlog,
            "pending": self.pending,
            "lag_p99_s": round(lags[int(0.99 * (len(lags) - 1))], 3) if lags else None,
            **extra,
        }

    def _publish_status(self, state: str = "online", **extra: Any) -> None:
        self.mqtt.publish(self.status_topic, json.dumps(self._status(state, **extra)), qos=1, retain=True)

    def _status_loop(self, stop: threading.Event) -> None:
        servers = [(h, int(p)) for h, _, p in (s.rpartition(":") for s in self.cfg.mqtt.servers)]
        i, next_status = 0, 0.0
        while not stop.is_set():
            host, port = servers[i % len(servers)]
            try:
                self.mqtt.connect(host, port, keepalive=self.cfg.mqtt.keepalive_s)
            except (OSError, ssl.SSLError) as e:
                log.warning("status: cluster node unreachable", node=f"{host}:{port}", error=str(e))
                i += 1
                stop.wait(0.5 if i % len(servers) else 2.0)
                continue
            while not stop.is_set():
                if self.mqtt.loop(timeout=0.1) != paho.MQTT_ERR_SUCCESS:
                    break
                if time.monotonic() >= next_status and self.mqtt.is_connected():
                    self._publish_status()
                    next_status = time.monotonic() + self.cfg.collector.status_period_s
            i += 1
        if self.mqtt.is_connected():
            self._publish_status("offline", reason="stopped")
            self.mqtt.loop(0.5)
            self.mqtt.disconnect()

    # -- the stream ---------------------------------------------------------------------------
    async def _sleep(self, s: float, stop: threading.Event) -> bool:
        """Sleep up to s seconds; True when asked to stop."""
        try:
            await asyncio.wait_for(self._stopping.wait(), s)
        except TimeoutError:
            pass
        return stop.is_set()

    async def _bind(self, stop: threading.Event) -> tuple[Any, JetStreamContext.PullSubscription] | None:
        async def lost(*_: Any) -> None:
            log.warning("cluster link lost", node=self.node)

        async def back(*_: Any) -> None:
            self.node = nc.connected_url.netloc if nc.connected_url else None
            log.info("cluster link back", node=self.node)

        async def error(e: Exception) -> None:
            log.warning("cluster connection error", error=str(e))

        s = self.cfg.stream
        while True:
            try:
                nc = await connect(
                    self.cfg,
                    f"suitemon-fleet-{self.id}",
                    disconnected_cb=lost,
                    reconnected_cb=back,
                    error_cb=error,
                )
                break
            except (OSError, TimeoutError, nats.errors.Error) as e:
                log.warning("cluster unreachable", servers=s.servers, error=str(e) or type(e).__name__)
                if await self._sleep(2.0, stop):
                    return None
        self.node = nc.connected_url.netloc if nc.connected_url else None
        js = nc.jetstream(timeout=5)
        while True:
            try:
                for what in await ensure(js, self.cfg):
                    log.info(what)
                sub = await js.pull_subscribe_bind(consumer=s.consumer, stream=MQTT_STREAM)
                break
            except StreamMissing as e:  # our own status client's connection creates it
                log.warning(str(e))
                if await self._sleep(1.0, stop):
                    await nc.close()
                    return None
                continue
            except (TimeoutError, nats.errors.Error, APIError) as e:
                # No answer is what a refused permission looks like: the request goes nowhere.
                log.error(
                    "stream or consumer unavailable: check the cluster and the account's permissions",
                    stream=MQTT_STREAM,
                    consumer=s.consumer,
                    error=str(e) or type(e).__name__,
                )
                if await self._sleep(2.0, stop):
                    await nc.close()
                    return None
        self.subscribed = True
        log.info("reading the stream", stream=MQTT_STREAM, consumer=s.consumer, node=self.node)
        return nc, sub

    async def _fetch(
        self, sub: JetStreamContext.PullSubscription, out: asyncio.Queue[list[Msg]], stop: threading.Event
    ) -> None:
        s = self.cfg.stream
        while not stop.is_set():
            try:
                msgs = await sub.fetch(self.cfg.collector.batch_max, timeout=s.fetch_timeout_s)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except (nats.errors.Error, APIError) as e:  # a node lost, a consumer leader moving
                log.warning("fetch failed: retrying", error=str(e) or type(e).__name__)
                await self._sleep(0.5, stop)
                continue
            self.counters.received += len(msgs)
            self.counters.redelivered += sum(1 for m in msgs if m.metadata.num_delivered > 1)
            self.backlog += len(msgs)
            await out.put(msgs)

    async def _write(self, msgs: list[Msg], stop: threading.Event) -> bool:
        items = [(m.subject, m.data) for m in msgs]
        rows, rejects = await asyncio.to_thread(parse_batch, items, self.cfg.base_topic)
        wait = 0.2
        while True:
            try:
                n = await asyncio.to_thread(self.store.write, rows, rejects)
                break
            except psycopg.Error as e:
                self.counters.db_errors += 1
                if self.db_state != "down":
                    log.error("database unavailable: holding acknowledgements", error=str(e).strip()[:300])
                self.db_state = "down"
                for m in msgs:  # still ours: no other collector should take them only to wait too
                    await _quietly(m.in_progress())
                if await self._sleep(wait, stop):
                    for m in msgs:  # another collector may take them now
                        await _quietly(m.nak())
                    return False
                wait = min(wait * 2, self.cfg.collector.retry_max_s)
        if self.db_state != "ok":
            log.info("database available", backlog=self.backlog)
        self.db_state = "ok"
        now = time.time()
        c = self.counters
        c.stored += n
        c.duplicates += len(msgs) - len(rejects) - n
        c.rejected += len(rejects)
        c.lags = [now - r.ts.timestamp() for r in rows]
        for m in msgs:
            await _quietly(m.ack())
        self.backlog -= len(msgs)
        return True

    async def _watch_pending(self, js: JetStreamContext, stop: threading.Event) -> None:
        s = self.cfg.stream
        while not await self._sleep(self.cfg.collector.status_period_s, stop):
            try:
                self.pending = (await js.consumer_info(MQTT_STREAM, s.consumer)).num_pending
            except (TimeoutError, nats.errors.Error, APIError):
                self.pending = None

    async def _ingest(self, stop: threading.Event) -> None:
        self._stopping = asyncio.Event()  # the signal handler's threading.Event, seen by the loop
        loop = asyncio.get_running_loop()

        def relay() -> None:
            stop.wait()
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop has already ended
                pass

        threading.Thread(target=relay, name="fleet-stop", daemon=True).start()
        bound = await self._bind(stop)
        if bound is None:
            return
        nc, sub = bound
        batches: asyncio.Queue[list[Msg]] = asyncio.Queue(maxsize=1)  # fetch the next while one is written
        fetcher = asyncio.create_task(self._fetch(sub, batches, stop))
        watcher = asyncio.create_task(self._watch_pending(nc.jetstream(timeout=2), stop))
        try:
            while not stop.is_set():
                try:
                    msgs = await asyncio.wait_for(batches.get(), 0.2)
                except TimeoutError:
                    continue
                if not await self._write(msgs, stop):
                    break
        finally:
            stop.set()
            for t in (fetcher, watcher):  # the fetcher may wait on a full queue: nobody takes from it now
                t.cancel()
            await asyncio.gather(fetcher, watcher, return_exceptions=True)
            while not batches.empty():
                for m in batches.get_nowait():
                    await _quietly(m.nak())
            await _quietly(nc.close())  # not drain(): it waits for the pull subscription up to 30 s

    # -- run ----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        s = self.cfg.stream
        log.info("collector starting", collector=self.id, servers=s.servers, consumer=s.consumer)
        try:  # the schema first: a collector that cannot migrate should say so before reading
            self.store._conn()
            self.db_state = "ok"
        except psycopg.Error as e:
            self.db_state = "down"
            log.error("database unavailable at start: will retry", error=str(e).strip()[:300])
        status = threading.Thread(target=self._status_loop, args=(stop,), name="fleet-status", daemon=True)
        status.start()
        try:
            asyncio.run(self._ingest(stop))
        finally:
            stop.set()
            status.join(5)
            self.store.close()
        log.info(
            "collector stopped",
            stored=self.counters.stored,
            duplicates=self.counters.duplicates,
            rejected=self.counters.rejected,
        )
        return 0


async def _quietly(aw: Any) -> None:
    """An acknowledgement the connection cannot send now: the cluster delivers the message again."""
    try:
        await aw
    except (nats.errors.Error, APIError, OSError):
        pass
