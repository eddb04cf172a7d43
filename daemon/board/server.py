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

from suitemon.daemon import __version__
from suitemon.daemon.alarms import iso
from suitemon.daemon.contract import Message, dumps
from suitemon.daemon.mqtt import MqttLink
from suitemon.daemon.tasks import TaskSet
from suitemon.daemon.threads import LoopBridge
from suitemon.daemon.board import views
from suitemon.daemon.board.config import BoardConfig
from suitemon.daemon.board.http import HttpError, HttpServer, Request, Response, Stream, stream_head
from suitemon.daemon.board.model import HEALTH, SuiteModel, subscriptions
from suitemon.daemon.board.sessions import Sessions
from suitemon.daemon.board.sse import PING_S, Client, Hub, frame
from suitemon.daemon.board.userlink import CommandFailed, LoginRefused, UserLink

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
FLUSH_GAP_S = 0.05   # coalesce bursts of messages; the page still updates well within a second
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
        self.hub = Hub(self.bcfg.max_clients)
        self.tasks = TaskSet()
        self.sent: dict[str, str] = {}
        self.current: dict[str, Any] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self.assets = {path: ((STATIC / name).read_bytes(), ctype) for path, (name, ctype) in ASSETS.items()}
        self.http = HttpServer(
            routes={
                ("GET", "/api/session"): self.get_session,
                ("GET", "/api/state"): self.get_state,
                ("GET", "/healthz"): self.get_health,
                ("POST", "/api/login"): self.post_login,
                ("POST", "/api/logout"): self.post_logout,
                ("POST", "/api/command"): self.post_command,
                **{("GET", path): self.get_asset for path in self.assets},
            },
            streams={"/events": self.events},
        )
        # Actions the page may ask for: page action -> MQTT command verb (fields: _command_body).
        self.verbs: dict[str, str] = {"accept": "accept", "reject": "reject", "ack": "ack", "reset": "reset",
                                      "bell_test": self.bcfg.bell_test_verb}

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        self.bridge = LoopBridge(asyncio.get_running_loop())
        b, m = self.bcfg, self.cfg.mqtt
        mcfg = m.model_copy(update={
            "username": b.observer_username, "password_file": b.observer_password_file,
            "client_id": f"suitemon-board-{self.cfg.site.id}-{b.board_id}-{socket.gethostname()}-{os.getpid()}"})
        self.status_topic = f"{self.root}/board/{b.board_id}/status"
        will = Message(self.status_topic, dumps(self.board_status("offline", "connection lost")), 1, True)
        self.link = ObserverLink(mcfg, client_id=mcfg.client_id, will=will, bridge=self.bridge,
                                 on_connect=self._broker_up, on_disconnect=lambda reason: self._broker_down(),
                                 on_message=self._message, subscriptions=subscriptions(self.root))
        self.link.start()
        await self.http.start(b.bind, b.port)
        self.tasks.spawn(self._tick(), name="board-tick")
        self.tasks.spawn(self._status_loop(), name="board-status")
        self.current = views.all_sections(self.model, self.cfg, b)
        log.info("board serving", url=f"http://{b.bind}:{self.http.port}/", site=self.cfg.site.id,
                 users=len(b.users), anonymous_view=b.anonymous_view)

    async def stop(self) -> None:
        self.hub.close_all()
        await self.tasks.cancel_all()
        await self.http.stop()
        for s in list(self.sessions.by_id.values()):
            self.sessions.remove(s)
            await s.link.close()
        goodbye = Message(self.status_topic, dumps(self.board_status("offline", "stopped")), 1, True)
        await asyncio.get_running_loop().run_in_executor(None, self.link.stop, goodbye)

    # -- MQTT side -------------------------------------------------------------
    def board_status(self, state: str, reason: str | None = None) -> dict[str, Any]:
        p = {"state": state, "ts": iso(time.time()), "site": self.cfg.site.id, "board_id": self.bcfg.board_id,
             "version": __version__}
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
                log.info("board session ended", user=s.login, why="idle or too old")
                self.tasks.spawn(s.link.close(), name="close-user-link")

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_PERIOD_S)
            self._publish_status()

    # -- HTTP handlers ------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"site": self.cfg.site.id, "site_name": self.cfg.site.name,
                "title": self.bcfg.title or f"{self.cfg.site.name}: suite board",
                "timezone": self.cfg.site.timezone, "board_id": self.bcfg.board_id, "version": __version__,
                "bell_test_verb": self.bcfg.bell_test_verb, "anonymous_view": self.bcfg.anonymous_view,
                "logins": bool(self.bcfg.users)}

    def snapshot(self) -> dict[str, Any]:
        return {"t": iso(time.time()), "meta": self.meta(), "sections": self.current}

    def _may_view(self, req: Request) -> bool:
        return self.bcfg.anonymous_view or self.sessions.lookup(req) is not None

    async def get_asset(self, req: Request) -> Response:
        body, ctype = self.assets[req.path]
        return Response(200, body, ctype, {"Cache-Control": "no-cache"})

    async def get_session(self, req: Request) -> Response:
        s = self.sessions.lookup(req)
        return Response.json({"session": s.public() if s else None, "meta": self.meta()})

    async def get_state(self, req: Request) -> Response:
        if not self._may_view(req):
            raise HttpError(401, "log in to view the board")
        return Response.json(self.snapshot())

    async def get_health(self, req: Request) -> Response:
        h = self.current.get("health") or {}
        ok = h.get("broker") == "connected" and h.get("daemon") == "online"
        return Response.json({"ok": ok, "broker": h.get("broker"), "daemon": h.get("daemon")}, 200 if ok else 503)

    async def events(self, req: Request, stream: Stream) -> None:
        if not self._may_view(req):
            await stream.send(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if self.hub.full:
            await stream.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        await stream.send(stream_head())
        await self.hub.serve(Client(stream, req.peer), frame("snapshot", self.snapshot()))

    async def post_login(self, req: Request) -> Response:
        self.sessions.check_origin(req)
        body = req.json()
        login, password = body.get("username"), body.get("password")
        if not isinstance(login, str) or not isinstance(password, str) or not login or not password:
            raise HttpError(400, "username and password are required")
        throttle_key = f"{req.peer.rsplit(':', 1)[0]}|{login}"
        if self.sessions.throttled(throttle_key):
            log.warning("board login throttled", user=login[:64], peer=req.peer)
            raise HttpError(429, "too many failed logins: wait a minute")
        user = self.bcfg.users.get(login)
        if user is None:
            self.sessions.failed(throttle_key)
            log.warning("board login refused: not a board user", user=login[:64], peer=req.peer)
            raise HttpError(401, "login failed: check the user name and password")
        actor = self.bcfg.actor_of(login)
        link = UserLink(self.cfg.mqtt, root=self.root, actor=actor, password=password, bridge=self.bridge,
                        client_id=f"suitemon-board-{self.bcfg.board_id}-{actor}-{os.urandom(4).hex()}")
        try:
            await link.connect(LOGIN_TIMEOUT_S)
        except LoginRefused as err:
            self.sessions.failed(throttle_key)
            log.warning("board login refused by the broker", user=login, peer=req.peer, reason=str(err))
            raise HttpError(401, "login failed: check the user name and password") from None
        self.sessions.succeeded(throttle_key)
        s = self.sessions.create(login, actor, user.name, user.kind, link)
        log.info("board login", user=login, actor=actor, kind=user.kind, peer=req.peer)
        self._publish_status()
        resp = Response.json({"ok": True, "session": s.public()})
        resp.cookies.append(self.sessions.cookie_for(s))
        return resp

    async def post_logout(self, req: Request) -> Response:
        s = self.sessions.require(req)
        self.sessions.remove(s)
        await s.link.close()
        log.info("board logout", user=s.login)
        self._publish_status()
        resp = Response.json({"ok": True})
        resp.cookies.append(self.sessions.clearing_cookie())
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

    async def post_command(self, req: Request) -> Response:
        s = self.sessions.require(req)
        data = req.json()
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
            return Response.json({"ok": False, "error": str(err), "unconfirmed": True}, 502)
        log.info("board command", user=s.login, actor=s.actor, verb=mqtt_verb, ok=reply.get("ok"),
                 error=reply.get("error"), **body)
        return Response.json({"ok": bool(reply.get("ok")), "verb": mqtt_verb, "result": reply.get("result"),
                              "error": reply.get("error")})


async def run_board(cfg, stopping: asyncio.Event) -> None:
    board = Board(cfg, getattr(cfg, "board", None))
    await board.start()
    try:
        await stopping.wait()
    finally:
        await board.stop()
