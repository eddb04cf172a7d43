"""One MQTT connection per logged-in user: the broker checks the password, the ACL binds the topic.

The login succeeds only if the broker accepts the user's credentials (CONNACK) and the
reply subscription is granted (SUBACK). Commands then go to ``cmd/<actor>/<verb>``, so
with the shipped pattern ACL (``cmd/%u/#``) nobody can act in someone else's name, and
the journal names the person. paho runs in its own thread and reaches the loop only
through :class:`suitemon.daemon.threads.LoopBridge`.

Commands are sent at QoS 0 and confirmed by the daemon's reply (sent after the change
is durable). paho would re-send a QoS 1 message queued during an outage after the
reconnect, minutes later, after the user was told it failed: an "accept" arriving then
would silently stop an escalation others rely on. A command is therefore sent at most
once, and one without a reply is reported as unconfirmed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import paho.mqtt.client as paho
import structlog

from suitemon.daemon.mqtt import connect, make_client
from suitemon.daemon.tasks import in_daemon_thread
from suitemon.daemon.threads import LoopBridge

log = structlog.get_logger("suitemon.board.userlink")


class LoginRefused(Exception):
    """The broker refused the credentials (or the board could not reach it)."""


class CommandFailed(Exception):
    """A command could not be sent, or no reply came in time (its outcome is unknown)."""


class UserLink:
    def __init__(self, mcfg, *, root: str, actor: str, password: str, client_id: str, bridge: LoopBridge):
        self.cfg = mcfg
        self.root = root
        self.actor = actor
        self.bridge = bridge
        self.connected = False
        self.closed = False
        self.reply_topic = f"{root}/reply/{actor}"
        self._ready: asyncio.Future = bridge.loop.create_future()
        self._pending: dict[str, asyncio.Future] = {}
        self._sub_mid: int | None = None
        # The user's own credentials, TLS as configured: the one factory (daemon/mqtt.py).
        self.client = make_client(mcfg, client_id, username=actor, password=password)
        self.client.on_connect = self._cb_connect
        self.client.on_subscribe = self._cb_subscribe
        self.client.on_disconnect = self._cb_disconnect
        self.client.on_message = self._cb_message

    # -- paho thread: hand everything to the loop --------------------------
    def _cb_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self.bridge.post(self._refused, str(reason_code))
            return
        _result, mid = client.subscribe(self.reply_topic, qos=1)
        self.bridge.post(self._subscribing, mid)

    def _cb_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        ok = all(not rc.is_failure for rc in reason_codes)
        self.bridge.post(self._subscribed, mid, ok)

    def _cb_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.bridge.post(self._disconnected, str(reason_code))

    def _cb_message(self, client, userdata, msg):
        self.bridge.post(self._reply, msg.payload)

    # -- loop side ----------------------------------------------------------
    def _refused(self, reason: str) -> None:
        self.connected = False
        if not self._ready.done():
            self._ready.set_exception(LoginRefused(f"the broker refused the login ({reason})"))
        else:
            log.warning("broker refused a logged-in user's reconnection", actor=self.actor, reason=reason)

    def _subscribing(self, mid: int) -> None:
        self._sub_mid = mid

    def _subscribed(self, mid: int, ok: bool) -> None:
        if not ok:
            if not self._ready.done():
                self._ready.set_exception(LoginRefused("the broker did not allow this user's reply topic"))
            return
        self.connected = True
        if not self._ready.done():
            self._ready.set_result(True)
        else:
            log.info("user link reconnected", actor=self.actor)

    def _disconnected(self, reason: str) -> None:
        was, self.connected = self.connected, False
        if was and not self.closed:
            log.warning("user link lost its broker connection", actor=self.actor, reason=reason)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(
                    CommandFailed(
                        "the broker connection dropped before the reply: "
                        "the command may or may not have been carried out"
                    )
                )
        self._pending.clear()

    def _reply(self, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("unreadable reply ignored", actor=self.actor)
            return
        rid = data.get("request_id") if isinstance(data, dict) else None
        fut = self._pending.pop(rid, None) if isinstance(rid, str) else None
        if fut is not None and not fut.done():
            fut.set_result(data)

    # -- API -----------------------------------------------------------------
    async def connect(self, timeout: float) -> None:
        connect(self.client, self.cfg)
        self.client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            await self.close()
            raise LoginRefused("the broker did not answer the login in time") from None
        except LoginRefused:
            await self.close()
            raise

    async def command(self, verb: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        if not self.connected or self.closed:
            raise CommandFailed("the board has no broker connection for you: the command was NOT sent")
        rid = "board-" + secrets.token_hex(8)
        fut: asyncio.Future = self.bridge.loop.create_future()
        self._pending[rid] = fut
        payload = json.dumps({**body, "request_id": rid}).encode()
        info = self.client.publish(f"{self.root}/cmd/{self.actor}/{verb}", payload, qos=0)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self._pending.pop(rid, None)
            raise CommandFailed("the command could not be sent (no broker connection): it was NOT sent")
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CommandFailed(
                f"no reply from suitemon within {timeout:g} s: the command may or may "
                "not have been carried out; check the alarm list"
            ) from None
        finally:
            self._pending.pop(rid, None)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.connected = False
        self.client.disconnect()
        # loop_stop joins paho's thread: not on the event loop, nor in the executor (asyncio.run's
        # exit waits for every executor thread, so a stuck join would hold up the board's exit).
        await in_daemon_thread(self.client.loop_stop, 1.0, "board-user-link-stop")
