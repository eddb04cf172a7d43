"""Read the retained journal checkpoint from the broker (``journal verify --witness mqtt``).

Run against the central broker (a config whose ``[mqtt]`` names it) the suite PC cannot
have rewritten what it returns; against the local broker it still catches a truncated
journal on a PC whose broker was left alone.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from suitemon.daemon.config import MqttConfig
from suitemon.daemon.mqtt import connect, make_client


class WitnessUnavailable(OSError):
    pass


def fetch_retained(mcfg: MqttConfig, topic: str, timeout: float = 5.0) -> list[Any]:
    """The retained message on ``topic`` as parsed JSON (a list of one), or [] if none is retained."""
    # The one client factory (daemon/mqtt.py): TLS and hostname settings as configured, never forgotten.
    client = make_client(mcfg, f"suitemon-verify-{uuid.uuid4().hex[:8]}", daemon_credentials=True)
    got: list[bytes | bytearray] = []
    subscribed, received = threading.Event(), threading.Event()
    refused: list[str] = []

    def on_connect(
        c: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
            received.set()
            return
        c.subscribe(topic, qos=1)

    def on_subscribe(
        c: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None = None,
    ) -> None:
        subscribed.set()

    def on_message(c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.retain:
            got.append(msg.payload)
            received.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    try:
        connect(client, mcfg, keepalive=10, blocking=True)
    except (OSError, ssl.SSLError) as err:
        raise WitnessUnavailable(f"cannot reach the broker {mcfg.host}:{mcfg.port}: {err}") from None
    client.loop_start()
    try:
        # A retained message arrives right after the SUBACK; a short grace after it means "none retained".
        if subscribed.wait(timeout):
            received.wait(1.0)
        elif not received.is_set():
            raise WitnessUnavailable(
                f"no answer from the broker {mcfg.host}:{mcfg.port} within {timeout:g} s"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        raise WitnessUnavailable(f"the broker refused the connection: {refused[0]}")
    out: list[Any] = []
    for payload in got:
        try:
            out.append(json.loads(payload))
        except (json.JSONDecodeError, UnicodeDecodeError):
            out.append(None)
    return out
