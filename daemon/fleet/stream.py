"""Where the collectors read the events: the durable pull consumer they share, on the stream in which
the cluster's MQTT layer keeps every QoS 1 message (``$MQTT_msgs``, replicated like the MQTT
sessions, ``stream_replicas``). docs/fleet.md, "Why the MQTT layer's stream".

Not a stream of our own capturing ``suitemon.*.event``: such a capture is a plain publish, and while
that stream elects a new leader (a node lost) it drops what arrives, although the site's bridge has
already been acknowledged (the MQTT layer stored it in ``$MQTT_msgs``): measured, 252 of 563 events
lost (tests/test_fleet.py). ``$MQTT_msgs`` keeps a message while a consumer has interest in it; the
durable consumer exists from ``suitemon fleet setup`` on, whether a collector runs or not, so every
event the bridge was acknowledged for is held until a collector has committed it."""

from __future__ import annotations

import ssl
from typing import Any

import nats
import structlog
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from suitemon.daemon.fleet.config import FleetConfig, read_secret

log = structlog.get_logger("suitemon.fleet")

# NATS's MQTT layer (nats-server 2.2 and later, server/README-MQTT.md): the stream of QoS 1
# messages and the prefix it stores an MQTT topic's subject under.
MQTT_STREAM = "$MQTT_msgs"
MQTT_PREFIX = "$MQTT.msgs."


class StreamMissing(Exception):
    """The MQTT layer creates its stream at the account's first MQTT connection."""


def event_filter(cfg: FleetConfig) -> str:
    # The MQTT topic suitemon/<site>/event is this subject; a site's account may publish only its
    # own, so the subject's site is trusted.
    return f"{MQTT_PREFIX}{cfg.base_topic}.*.event"


def topic_of(subject: str) -> str:
    """$MQTT.msgs.suitemon.<site>.event -> suitemon/<site>/event (ids have no dots)."""
    return subject.removeprefix(MQTT_PREFIX).replace(".", "/")


def consumer_config(cfg: FleetConfig) -> ConsumerConfig:
    s = cfg.stream
    return ConsumerConfig(
        durable_name=s.consumer,
        description="suitemon fleet collectors (shared: each message to one of them)",
        filter_subject=event_filter(cfg),
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
    """Create the shared durable consumer when missing (with update, `suitemon fleet setup`, bring
    an existing one to the fleet file's settings). Returns what was done, for the operator."""
    try:
        await js.stream_info(MQTT_STREAM)
    except NotFoundError:
        raise StreamMissing(
            f"the cluster has no {MQTT_STREAM} stream yet: it appears with the account's first MQTT client"
        ) from None
    c = consumer_config(cfg)
    try:
        have = await js.consumer_info(MQTT_STREAM, cfg.stream.consumer)
    except NotFoundError:
        await js.add_consumer(MQTT_STREAM, c)
        return [f"consumer {cfg.stream.consumer} created on {MQTT_STREAM} ({c.filter_subject})"]
    if have.config.filter_subject != c.filter_subject:
        raise APIError(description=f"consumer {cfg.stream.consumer} reads {have.config.filter_subject}")
    if not update:
        return []
    try:  # the same durable again: the server applies what may change (ack_wait, limits)
        await js.add_consumer(MQTT_STREAM, c)
        return [f"consumer {cfg.stream.consumer} updated"]
    except APIError as e:
        return [f"consumer {cfg.stream.consumer} kept as it is: {e.description}"]
