"""The event stream on the central cluster: every site's `suitemon.<site>.event` kept (R3, age limit)
whether a collector runs or not, and the durable pull consumer the collectors share. docs/fleet.md."""

from __future__ import annotations

import ssl
from typing import Any

import nats
import structlog
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError

from suitemon.daemon.fleet.config import FleetConfig, read_secret

log = structlog.get_logger("suitemon.fleet")


def stream_config(cfg: FleetConfig) -> StreamConfig:
    s = cfg.stream
    return StreamConfig(
        name=s.name,
        description="suitemon: every site's journal events (docs/fleet.md)",
        # The MQTT topic suitemon/<site>/event is this subject; a site's account may publish only
        # its own, so the subject's site is trusted.
        subjects=[f"{cfg.base_topic}.*.event"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=s.replicas,
        max_age=s.max_age_days * 86400,
        discard=DiscardPolicy.OLD,
    )


def consumer_config(cfg: FleetConfig) -> ConsumerConfig:
    s = cfg.stream
    return ConsumerConfig(
        durable_name=s.consumer,
        description="suitemon fleet collectors (shared: each message to one of them)",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=s.ack_wait_s,
        max_deliver=-1,  # never given up on: an event that cannot be stored waits for the database
        max_ack_pending=s.max_ack_pending,
        max_waiting=512,
    )


async def connect(cfg: FleetConfig, name: str, **overrides: Any) -> Nats:
    m = cfg.mqtt
    tls = None
    if m.ca_file is not None or any(u.startswith("tls://") for u in cfg.stream.servers):
        tls = ssl.create_default_context(cafile=str(m.ca_file) if m.ca_file else None)
    options: dict[str, Any] = {
        "servers": cfg.stream.servers,
        "name": name,
        # Its own inbox prefix: the account lets it hear replies there only, not other clients' inboxes.
        "inbox_prefix": "_INBOX_fleet",
        "user": m.username,
        "password": read_secret(m.password_file),
        "tls": tls,
        "connect_timeout": 2,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "ping_interval": 5,
        "max_outstanding_pings": 2,
    }
    return await nats.connect(**{**options, **overrides})


async def ensure(js: JetStreamContext, cfg: FleetConfig, update: bool = False) -> list[str]:
    """Create the stream and the consumer when missing. An existing stream that differs from the
    fleet file is changed only with update (`suitemon fleet setup`): a collector starting must not
    reshape what other collectors read. Returns what was done, for the operator."""
    done = []
    want = stream_config(cfg)
    try:
        have = (await js.stream_info(want.name)).config
    except NotFoundError:
        await js.add_stream(want)
        done.append(f"stream {want.name} created ({', '.join(want.subjects or [])}, R{want.num_replicas})")
    else:
        diff = {
            k: (getattr(have, k), getattr(want, k))
            for k in ("subjects", "num_replicas", "max_age", "retention", "storage")
            if getattr(have, k) != getattr(want, k)
        }
        if diff and update:
            await js.update_stream(want)
            done.append(f"stream {want.name} updated: {sorted(diff)}")
        elif diff:
            log.warning("the stream differs from the fleet file: run 'suitemon fleet setup'", diff=str(diff))
    c = consumer_config(cfg)
    try:
        await js.consumer_info(want.name, cfg.stream.consumer)
        if update:
            try:  # the same durable again: the server applies what may change (ack_wait, limits)
                await js.add_consumer(want.name, c)
                done.append(f"consumer {cfg.stream.consumer} updated")
            except APIError as e:
                done.append(f"consumer {cfg.stream.consumer} kept as it is: {e.description}")
    except NotFoundError:
        await js.add_consumer(want.name, c)
        done.append(f"consumer {cfg.stream.consumer} created on {want.name}")
    return done
