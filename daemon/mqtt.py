"""MQTT: the one client factory, and the daemon's link bridged into the event loop.

Every part of suitemon that connects (daemon, board and its per-user links, the
shutdown CLI, the rehearsal, the demo's view) builds its client with
:func:`make_client` and connects with :func:`connect`, so ``[mqtt.tls]``, hostname
checking and the packet-size limit cannot be forgotten by one of them again.

MQTT 5 by default, 3.1.1 on request. Request/reply correlation always travels in
the JSON payload, so the contract is the same on both. The Last Will flips the
retained status topic to offline if the daemon dies without saying goodbye.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from suitemon.daemon.contract import Message, dumps
from suitemon.daemon.threads import LoopBridge

if TYPE_CHECKING:
    from suitemon.daemon.config import MqttConfig

log = structlog.get_logger("suitemon.mqtt")

# The largest packet suitemon accepts from the broker (MQTT 5 CONNECT "Maximum Packet Size"):
# the broker drops anything larger for us instead of sending it (a 100 MB "command" once took
# the daemon from 69 to 364 MB). Commands are at most 16 KiB; retained records and events a
# reader takes in are far below this. The shipped broker caps packets at the same size.
MAX_PACKET = 256 * 1024


def make_client(
    mcfg: MqttConfig,
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    daemon_credentials: bool = False,
) -> paho.Client:
    """A paho client with TLS as configured. Credentials: given, or the daemon's own (password file)."""
    v5 = mcfg.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else True,
    )
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    if daemon_credentials and mcfg.username:
        username = mcfg.username
        password = mcfg.password_file.read_text().strip() if mcfg.password_file else None
    if username:
        client.username_pw_set(username, password)
    if mcfg.tls is not None:
        client.tls_set(
            ca_certs=str(mcfg.tls.ca_file),
            certfile=str(mcfg.tls.cert_file) if mcfg.tls.cert_file else None,
            keyfile=str(mcfg.tls.key_file) if mcfg.tls.key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        if mcfg.tls.insecure_skip_hostname:
            client.tls_insecure_set(True)
    return client


def connect_properties(mcfg: MqttConfig) -> Properties | None:
    if mcfg.protocol != "5":
        return None  # MQTT 3.1.1 cannot ask; the broker's max_packet_size is the limit then
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
    props.MaximumPacketSize = MAX_PACKET
    return props


def connect(
    client: paho.Client, mcfg: MqttConfig, *, keepalive: int | None = None, blocking: bool = False
) -> None:
    """Connect as configured (host, port, keepalive, packet limit); blocking raises OSError at once."""
    fn = client.connect if blocking else client.connect_async
    fn(mcfg.host, mcfg.port, keepalive=keepalive or mcfg.keepalive_s, properties=connect_properties(mcfg))


def mqtt_settings(host: str, port: int, protocol: str = "5") -> MqttConfig:
    """Settings for a plain local broker (the demo's embedded one) in the config's own model."""
    from suitemon.daemon.config import MqttConfig

    # Validated like a config file: a protocol other than "5" or "3.1.1" is refused here.
    return MqttConfig.model_validate({"host": host, "port": port, "protocol": protocol})


class _PahoLog(logging.LoggerAdapter[logging.Logger]):
    """paho's log for one link. After our own disconnect, paho's loop may run once more on the
    closed socket and log "Client is not connected" as an error: that one is expected, not a fault."""

    def __init__(self, logger: logging.Logger, link: MqttLink):
        super().__init__(logger, {})
        self.link = link

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.link.stopping and "not connected" in str(msg):
            return
        super().log(level, msg, *args, **kwargs)


class MqttLink:
    def __init__(
        self,
        mcfg: MqttConfig,
        *,
        client_id: str,
        will: Message | None,
        bridge: LoopBridge,
        on_connect: Callable[[], None] = lambda: None,
        on_disconnect: Callable[[str], None] = lambda reason: None,
        on_ack: Callable[[int], None] = lambda mid: None,
        on_message: Callable[[str, bytes], None] = lambda t, p: None,
        subscriptions: tuple[str, ...] = (),
    ) -> None:
        self.cfg = mcfg
        self.bridge = bridge
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_ack = on_ack
        self._on_message = on_message
        self.subscriptions = list(subscriptions)
        self.connected = False
        self.stopping = False
        self.dropped_oversize = 0
        self._connected_evt = threading.Event()
        self.client_id = client_id
        self._losses: list[float] = []
        self._flap_reported = -1e9
        self.client = make_client(mcfg, client_id, daemon_credentials=True)
        # A callback that raises must not end the network loop (paho's default): log and go on.
        self.client.suppress_exceptions = True
        # paho only calls .log() on it (an adapter that drops one expected message); its stub says Logger.
        self.client.enable_logger(_PahoLog(logging.getLogger("suitemon.paho"), self))  # type: ignore[arg-type]
        self._thread: threading.Thread | None = None
        self.client.max_inflight_messages_set(mcfg.max_inflight)
        self.client.max_queued_messages_set(0)
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.client.on_connect = self._cb_connect
        self.client.on_disconnect = self._cb_disconnect
        self.client.on_publish = self._cb_publish
        self.client.on_message = self._cb_message

    # -- paho thread side: hand everything to the loop ----------------------
    def _cb_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        if reason_code.is_failure:
            log.error("mqtt connection refused", reason=str(reason_code))
            return
        # Flag first, then subscribe: a subscription added meanwhile (add_subscription in the
        # loop thread) is then either in this list or subscribed by its adder; twice is harmless.
        self._connected_evt.set()
        for topic in list(self.subscriptions):
            client.subscribe(topic, qos=1)
        self.bridge.post(self._connected)

    def _cb_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        self._connected_evt.clear()
        self.bridge.post(self._disconnected, str(reason_code))

    def _cb_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode | None = None,
        properties: Properties | None = None,
    ) -> None:
        self.bridge.post(self._on_ack, mid)

    def _cb_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if len(msg.payload) > MAX_PACKET:
            # Only a broker that ignores our Maximum Packet Size (or MQTT 3.1.1) gets here:
            # dropped in paho's thread, before the loop or a decoder sees it.
            log.error(
                "oversize MQTT message dropped before decoding",
                topic=msg.topic[:200],
                size=len(msg.payload),
                limit=MAX_PACKET,
            )
            self.dropped_oversize += 1
            return
        self.bridge.post(self._on_message, msg.topic, msg.payload)

    # -- loop side ----------------------------------------------------------
    def _connected(self) -> None:
        self.connected = True
        log.info("mqtt connected", host=self.cfg.host, port=self.cfg.port, protocol=self.cfg.protocol)
        self._on_connect()

    def _disconnected(self, reason: str) -> None:
        was = self.connected
        self.connected = False
        if was and not self.stopping:
            log.error("mqtt connection lost; events are kept in the journal", reason=reason)
            now = time.monotonic()
            self._losses = [t for t in self._losses if now - t < 30.0] + [now]
            if len(self._losses) >= 3 and now - self._flap_reported > 60.0:
                # Most often a second client with our client id (a second suitemon for this site):
                # the broker closes the older session each time the other connects, for ever.
                self._flap_reported = now
                log.error(
                    "MQTT CONNECTION FLAPPING: lost 3 times in 30 s; is another client (a second "
                    "suitemon for this site?) using this client id?",
                    client_id=self.client_id,
                    reason=reason,
                )
        self._on_disconnect(reason)

    def add_subscription(self, topic: str) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        if topic in self.subscriptions:
            return
        self.subscriptions.append(topic)
        if self._connected_evt.is_set():
            self.client.subscribe(topic, qos=1)

    def start(self) -> None:
        connect(self.client, self.cfg)
        # Our own thread around paho's loop, so that if the loop ever ends while we still
        # want a connection it is logged and started again, never left dead and silent.
        self._thread = threading.Thread(target=self._network, name="suitemon-mqtt", daemon=True)
        self._thread.start()

    def _network(self) -> None:
        while not self.stopping:
            try:
                self.client.loop_forever(retry_first_connection=True)
            except Exception as err:
                log.error("mqtt network loop failed; restarting it", error=repr(err))
            if self._stop_requested():
                break
            log.error("mqtt network loop ended unexpectedly; reconnecting")
            time.sleep(1.0)
            try:
                self.client.reconnect()
            except Exception as err:
                log.error("mqtt reconnect failed; will retry", error=repr(err))

    def _stop_requested(self) -> bool:
        # Read afresh: stop() sets the flag from another thread while loop_forever runs (a plain
        # ``self.stopping`` here is narrowed to False by the while condition for the type checker).
        return self.stopping

    @property
    def network_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def publish(self, msg: Message) -> int:
        info = self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        return info.mid

    def publish_json(self, topic: str, obj: Any, *, qos: int = 1, retain: bool = False) -> int:
        return self.publish(Message(topic, dumps(obj), qos, retain))

    def stop(self, goodbye: Message | None = None, timeout: float = 2.0) -> None:
        """Say goodbye (best effort, bounded), then disconnect so the Will is not sent."""
        self.stopping = True
        if goodbye is not None and self._connected_evt.is_set():
            info = self.client.publish(goodbye.topic, goodbye.payload, qos=goodbye.qos, retain=goodbye.retain)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
