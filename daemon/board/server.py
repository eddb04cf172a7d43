"""The board process: observer MQTT link -> model -> views -> browsers; logins -> user links -> commands.

Routes are one explicit table. The board's own availability is a retained
``board/<id>/status`` topic with a Last Will, so whoever watches the suite can tell
when a display has gone (a distributed alarm system must notice a lost display).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from suitemon.daemon import __version__
from suitemon.daemon.alarms import iso
from suitemon.daemon.board import views
from suitemon.daemon.board.config import BoardConfig
from suitemon.daemon.board.listener import CappedListener
from suitemon.daemon.board.model import HEALTH, SuiteModel, subscriptions
from suitemon.daemon.board.sessions import Session, Sessions
from suitemon.daemon.board.sse import PING_S, Client, Hub, frame
from suitemon.daemon.board.throttle import LoginThrottle
from suitemon.daemon.board.userlink import CommandFailed, LoginRefused, UserLink
from suitemon.daemon.board.web import HostPolicy, HttpError, ParserLog, json_body, json_response, make_app
from suitemon.daemon.contract import Message, dumps
from suitemon.daemon.mqtt import MqttLink
from suitemon.daemon.tasks import TaskSet, bounded, in_daemon_thread
from suitemon.daemon.threads import LoopBridge

log = structlog.get_logger("suitemon.board")

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {  # path -> (file, content type): an explicit list, nothing else under static/ is served
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/board.css": ("board.css", "text/css; charset=utf-8"),
    "/static/board.js": ("board.js", "text/javascript; charset=utf-8"),
    "/static/render.js": ("render.js", "text/javascript; charset=utf-8"),
    "/static/sound.js": ("sound.js", "text/javascript; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
ALARM_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
LOGIN_TIMEOUT_S = 5.0
FLUSH_GAP_S = 0.05  # coalesce bursts of messages; the page still updates well within a second
STATUS_PERIOD_S = 10.0


class ObserverLink(MqttLink):
    """The board's read-only link; it also needs each message's retain flag (old or live status)."""

    def _cb_message(self, client, userdata, msg):
        self.bridge.post(self._on_message, msg.topic, msg.payload, bool(msg.retain))


class Board:
    def __init__(self, cfg, bcfg: BoardConfig | None = None):
        self.cfg = cfg
        self.bcfg = bcfg or BoardConfig()
        self.root = f"{cfg.mqtt.base_topic}/{cfg.site.id}"
        self.model = SuiteModel(self.root)
        self.sessions = Sessions(self.bcfg.session)
        self.throttle = LoginThrottle()
        self.hub = Hub(self.bcfg.max_clients, self.bcfg.max_anonymous_clients)
        self.tasks = TaskSet()
        self.sent: dict[str, str] = {}
        self.current: dict[str, Any] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self.assets = {path: ((STATIC / name).read_bytes(), ctype) for path, (name, ctype) in ASSETS.items()}
        self.app = make_app(
            {
                ("GET", "/api/session"): self.get_session,
                ("GET", "/api/state"): self.get_state,
                ("GET", "/healthz"): self.get_health,
                ("GET", "/events"): self.events,
                ("POST", "/api/login"): self.post_login,
                ("POST", "/api/logout"): self.post_logout,
                ("POST", "/api/command"): self.post_command,
                **{("GET", path): self.get_asset for path in self.assets},
            },
            HostPolicy(self._host_names()),
        )
        # Actions the page may ask for: page action -> MQTT command verb (fields: _command_body).
        self.verbs: dict[str, str] = {
            "accept": "accept",
            "reject": "reject",
            "ack": "ack",
            "reset": "reset",
            "bell_test": self.bcfg.bell_test_verb,
        }

    def _host_names(self) -> list[str]:
        names = ["localhost", socket.gethostname(), socket.getfqdn(), *self.bcfg.allowed_hosts]
        if self.bcfg.bind not in ("0.0.0.0", "::", ""):
            names.append(self.bcfg.bind)
        return names

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        self.bridge = LoopBridge(asyncio.get_running_loop())
        b, m = self.bcfg, self.cfg.mqtt
        mcfg = m.model_copy(
            update={
                "username": b.observer_username,
                "password_file": b.observer_password_file,
                "client_id": f"suitemon-board-{self.cfg.site.id}-{b.board_id}-{socket.gethostname()}-{os.getpid()}",
            }
        )
        self.status_topic = f"{self.root}/board/{b.board_id}/status"
        will = Message(self.status_topic, dumps(self.board_status("offline", "connection lost")), 1, True)
        self.link = ObserverLink(
            mcfg,
            client_id=mcfg.client_id,
            will=will,
            bridge=self.bridge,
            on_connect=self._broker_up,
            on_disconnect=lambda reason: self._broker_down(),
            on_message=self._message,
            subscriptions=subscriptions(self.root),
        )
        self.link.start()
        # No access log (the middleware logs refusals); aiohttp's parser errors become one line each.
        self.runner = web.AppRunner(
            self.app,
            access_log=None,
            logger=ParserLog(),
            shutdown_timeout=2.0,
            keepalive_timeout=b.idle_connection_s,
        )
        await self.runner.setup()
        self.listener = CappedListener(self.runner.server, b.max_connections)
        await self.listener.start(b.bind, b.port)
        self.tasks.spawn(self._tick(), name="board-tick")
        self.tasks.spawn(self._status_loop(), name="board-status")
        self.current = views.all_sections(self.model, self.cfg, b)
        log.info(
            "board serving",
            url=f"http://{b.bind}:{self.listener.port}/",
            site=self.cfg.site.id,
            users=len(b.users),
            anonymous_view=b.anonymous_view,
        )

    @property
    def port(self) -> int:
        """The port the board listens on (the configured one, or the one bound for port 0)."""
        return self.listener.port

    async def stop(self) -> None:
        """Bounded like the daemon's stop (5 s in all): a stuck step is logged and left, never waited on."""
        self.hub.close_all()
        await self.tasks.cancel_all(timeout=0.5)
        self.listener.close()
        await bounded("board http", [self.runner.cleanup()], 2.5)  # aiohttp's shutdown_timeout is 2 s
        sessions = list(self.sessions.by_id.values())
        for s in sessions:
            self.sessions.remove(s)
        await bounded("board user links", [s.link.close() for s in sessions], 1.0)
        goodbye = Message(self.status_topic, dumps(self.board_status("offline", "stopped")), 1, True)
        await in_daemon_thread(lambda: self.link.stop(goodbye, timeout=0.8), 1.0, "board-goodbye")

    # -- MQTT side -------------------------------------------------------------
    def board_status(self, state: str, reason: str | None = None) -> dict[str, Any]:
        p = {
            "state": state,
            "ts": iso(time.time()),
            "site": self.cfg.site.id,
            "board_id": self.bcfg.board_id,
            "version": __version__,
        }
        if reason:
            p["reason"] = reason
        if state == "online":
            p["viewers"] = len(self.hub.clients)
            p["sessions"] = sorted({s.actor for s in self.sessions.by_id.values()})
        return p

    def _publish_status(self) -> None:
        if self.link.connected:
            self.link.publish_json(self.status_topic, self.board_status("online"), retain=True)

    def _broker_up(self) -> None:
        self.changed(self.model.on_broker(True))
        self._publish_status()

    def _broker_down(self) -> None:
        # Straight to the browsers: losing the broker must show at once, not at the next tick.
        self.changed(self.model.on_broker(False), at_once=True)

    def _message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        self.changed(self.model.on_message(topic, payload, retained))

    # -- pushing ----------------------------------------------------------------
    def changed(self, sections: set[str], at_once: bool = False) -> None:
        if not sections:
            return
        if at_once:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_GAP_S, self._flush)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.current = views.all_sections(self.model, self.cfg, self.bcfg)
        patch = {}
        for name, value in self.current.items():
            text = json.dumps(value, sort_keys=True)
            if self.sent.get(name) != text:
                self.sent[name] = text
                patch[name] = value
        if patch:
            self.hub.broadcast(frame("patch", {"t": iso(time.time()), "sections": patch}))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(PING_S)
            self.changed({HEALTH}, at_once=True)  # a status that stops refreshing turns stale here
            self.hub.broadcast(frame("ping", {"t": iso(time.time()), "health": self.current.get("health")}))
            for s in self.sessions.expired():
                log.info(
                    "board session ended",
                    user=s.login,
                    why="idle or too old",
                    streams_closed=self.hub.close_session(s.sid),
                )
                self.tasks.spawn(s.link.close(), name="close-user-link")

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_PERIOD_S)
            self._publish_status()

    # -- HTTP handlers ------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "site": self.cfg.site.id,
            "site_name": self.cfg.site.name,
            "title": self.bcfg.title or f"{self.cfg.site.name}: suite board",
            "timezone": self.cfg.site.timezone,
            "board_id": self.bcfg.board_id,
            "version": __version__,
            "bell_test_verb": self.bcfg.bell_test_verb,
            "anonymous_view": self.bcfg.anonymous_view,
            "logins": bool(self.bcfg.users),
        }

    def snapshot(self) -> dict[str, Any]:
        return {"t": iso(time.time()), "meta": self.meta(), "sections": self.current}

    def _viewer(self, req: web.Request) -> tuple[bool, Session | None]:
        """(may view, session): the board shows itself to a session, or to anyone if so configured."""
        s = self.sessions.lookup(req)
        return (self.bcfg.anonymous_view or s is not None), s

    async def get_asset(self, req: web.Request) -> web.Response:
        body, ctype = self.assets[req.path]
        return web.Response(body=body, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})

    async def get_session(self, req: web.Request) -> web.Response:
        s = self.sessions.lookup(req)
        return json_response({"session": s.public() if s else None, "meta": self.meta()})

    async def get_state(self, req: web.Request) -> web.Response:
        if not self._viewer(req)[0]:
            raise HttpError(401, "log in to view the board")
        return json_response(self.snapshot())

    async def get_health(self, req: web.Request) -> web.Response:
        h = self.current.get("health") or {}
        ok = h.get("broker") == "connected" and h.get("daemon") == "online"
        return json_response(
            {"ok": ok, "broker": h.get("broker"), "daemon": h.get("daemon")}, 200 if ok else 503
        )

    async def events(self, req: web.Request) -> web.StreamResponse:
        may_view, s = self._viewer(req)
        if not may_view:
            raise HttpError(401, "log in to view the board")
        why = self.hub.refusal(anonymous=s is None)
        if why is not None:
            log.warning("event stream refused", peer=req.remote, anonymous=s is None, reason=why)
            raise HttpError(503, why)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        resp.force_close()  # an ended stream ends its connection: the browser reconnects afresh
        await resp.prepare(req)
        await self.hub.serve(
            Client(resp.write, req.remote, s.sid if s else None), frame("snapshot", self.snapshot())
        )
        return resp

    async def post_login(self, req: web.Request) -> web.Response:
        self.sessions.check_origin(req)
        body = await json_body(req)
        login, password = body.get("username"), body.get("password")
        if not isinstance(login, str) or not isinstance(password, str) or not login or not password:
            raise HttpError(400, "username and password are required")
        if len(login) > 200 or len(password) > 1000:
            raise HttpError(400, "username or password too long")
        user = self.bcfg.users.get(login)
        key = self.throttle.key(req.remote or "?", login, known=user is not None)
        if not self.throttle.begin(key):
            log.warning("board login throttled", user=login[:64], peer=req.remote)
            raise HttpError(429, "too many failed logins: wait a minute")
        ok = False
        try:
            if user is None:
                log.warning("board login refused: not a board user", user=login[:64], peer=req.remote)
                raise HttpError(401, "login failed: check the user name and password")
            s = await self._open_session(login, password, user, req)
            ok = True
        finally:
            self.throttle.end(key, ok)
        resp = json_response({"ok": True, "session": s.public()})
        resp.headers.add("Set-Cookie", self.sessions.cookie_for(s))
        return resp

    async def _open_session(self, login: str, password: str, user, req: web.Request) -> Session:
        actor = self.bcfg.actor_of(login)
        link = UserLink(
            self.cfg.mqtt,
            root=self.root,
            actor=actor,
            password=password,
            bridge=self.bridge,
            client_id=f"suitemon-board-{self.bcfg.board_id}-{actor}-{os.urandom(4).hex()}",
        )
        try:
            await link.connect(LOGIN_TIMEOUT_S)
        except LoginRefused as err:
            log.warning("board login refused by the broker", user=login, peer=req.remote, reason=str(err))
            raise HttpError(401, "login failed: check the user name and password") from None
        s = self.sessions.create(login, actor, user.name, user.kind, link)
        log.info("board login", user=login, actor=actor, kind=user.kind, peer=req.remote)
        self._publish_status()
        return s

    async def post_logout(self, req: web.Request) -> web.Response:
        s = self.sessions.require(req)
        self.sessions.remove(s)
        closed = self.hub.close_session(s.sid)
        await s.link.close()
        log.info("board logout", user=s.login, streams_closed=closed)
        self._publish_status()
        resp = json_response({"ok": True})
        resp.headers.add("Set-Cookie", self.sessions.clearing_cookie())
        return resp

    def _command_body(self, verb: str, args: Any) -> dict[str, Any]:
        if not isinstance(args, dict):
            raise HttpError(400, "args must be an object")
        if verb == "bell_test":
            room = args.get("room")
            area = self.cfg.areas.get(room) if isinstance(room, str) else None
            if area is None or area.kind != "uptake_room":
                raise HttpError(400, "room must be an uptake room of this site")
            return {"room": room}
        aid = args.get("alarm_id")
        if not isinstance(aid, str) or not ALARM_ID.match(aid):
            raise HttpError(400, "alarm_id is missing or malformed")
        body: dict[str, Any] = {"alarm_id": aid}
        key = "reason" if verb == "reject" else "note"
        text = args.get(key)
        if text is not None:
            if not isinstance(text, str) or len(text) > 500:
                raise HttpError(400, f"{key} must be text of at most 500 characters")
            if text.strip():
                body[key] = text.strip()
        return body

    async def post_command(self, req: web.Request) -> web.Response:
        s = self.sessions.require(req)
        data = await json_body(req)
        verb = data.get("verb")
        mqtt_verb = self.verbs.get(verb) if isinstance(verb, str) else None
        if mqtt_verb is None:
            raise HttpError(400, f"unknown action; known: {', '.join(self.verbs)}")
        body = self._command_body(verb, data.get("args", {}))
        s.commands += 1
        try:
            reply = await s.link.command(mqtt_verb, body, self.bcfg.command_timeout_s)
        except CommandFailed as err:
            log.error("board command not confirmed", user=s.login, verb=mqtt_verb, error=str(err), **body)
            return json_response({"ok": False, "error": str(err), "unconfirmed": True}, 502)
        log.info(
            "board command",
            user=s.login,
            actor=s.actor,
            verb=mqtt_verb,
            ok=reply.get("ok"),
            error=reply.get("error"),
            **body,
        )
        return json_response(
            {
                "ok": bool(reply.get("ok")),
                "verb": mqtt_verb,
                "result": reply.get("result"),
                "error": reply.get("error"),
            }
        )


async def run_board(cfg, stopping: asyncio.Event) -> None:
    board = Board(cfg, getattr(cfg, "board", None))
    await board.start()
    try:
        await stopping.wait()
    finally:
        await board.stop()
