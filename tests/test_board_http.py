"""The board's HTTP side against a real board process and a broker that checks passwords: logins
are decided by the broker, cookies are HttpOnly/SameSite=Strict, state-changing requests need the
CSRF token from our own origin, bad requests are refused and survived, credentials never reach logs."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from board_helpers import SUITE_ACL, SecuredMosquitto, cookie_of, points_env, raw, start_board, status_of
from conftest import Suite
from helpers import Watcher
from schema_check import problems

PASSWORDS = {
    "suitemon": "daemon-secret",
    "board": "board-secret",
    "watcher": "watch-secret",
    "nurse1": "Nurse1-Pass!",
    "nurse2": "Nurse2-Pass!",
}
STATIC = Path(__file__).resolve().parent.parent / "daemon" / "board" / "static"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("board-http")
    broker = SecuredMosquitto(tmp / "broker", PASSWORDS, SUITE_ACL).start()
    for user in ("suitemon", "board"):
        (tmp / f"{user}.pw").write_text(PASSWORDS[user] + "\n")
        (tmp / f"{user}.pw").chmod(0o600)  # suitemon run refuses a password file others can read
    suite = Suite(
        tmp / "suite",
        broker,
        {"env": points_env()},
        {"mqtt": {"username": "suitemon", "password_file": str(tmp / "suitemon.pw")}},
    )
    w = Watcher(broker.port, username="watcher", password=PASSWORDS["watcher"])
    try:
        suite.start_sims()
        suite.start_daemon(w)
        board = start_board(
            suite,
            {
                "observer_username": "board",
                "observer_password_file": str(tmp / "board.pw"),
                "users": {
                    "nurse1": {"name": "Nurse One"},
                    "nurse2": {"name": "Nurse Two"},
                    "ghost": {"name": "Not a broker user"},
                },
            },
        )
        w.wait_for(
            lambda x: (s := x.json_of(suite.topic("board", "board", "status"))) and s["state"] == "online",
            10,
            what="board online",
        )
        suite.sim("env", "set", temperature=31.0)
        w.wait_for(
            lambda x: (
                (a := x.json_of(suite.topic("alarm", "env.temperature.high"))) and a["state"] == "active"
            )
        )
        yield suite, board, w
    finally:
        suite.close()
        w.close()
        broker.stop()
    found = problems(w.messages)
    assert not found, found


def login(board, user, password, peer_headers=None):
    return board.post("/api/login", {"username": user, "password": password}, peer_headers)


def test_page_and_assets_come_from_the_board_with_a_strict_policy(env):
    _, board, _ = env
    status, headers, body = board.get("/")
    assert status == 200 and b"<main" in body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    for f in STATIC.iterdir():
        text = f.read_text()
        # No CDN, no web font, nothing fetched from outside (the hospital network has no internet).
        assert not re.search(
            r"(src|href)=\"https?:|url\(\s*['\"]?https?:|@import|fetch\(\s*['\"]https?:", text
        ), f.name
        status, headers, _ = board.get("/" if f.name == "index.html" else f"/static/{f.name}")
        assert status == 200, f.name
    assert board.get("/static/../server.py")[0] == 404
    assert board.get("/static/nothing.js")[0] == 404


def test_login_is_decided_by_the_broker_and_sets_a_strict_cookie(env):
    suite, board, _ = env
    status, _, body = login(board, "nurse1", "wrong password")
    assert status == 401 and "login failed" in body["error"]
    status, _, _ = login(board, "ghost", "anything")  # on the board's list, unknown to the broker
    assert status == 401
    status, headers, body = login(board, "nurse1", PASSWORDS["nurse1"])
    assert status == 200 and body["session"]["actor"] == "nurse1"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    status, _, session = board.get("/api/session", {"Cookie": cookie_of(headers)})
    assert json.loads(session)["session"]["user"] == "nurse1"
    log = (suite.tmp / "board.log").read_text()
    for secret in PASSWORDS.values():
        assert secret not in log, "a password reached the board's log"
    assert body["session"]["csrf"] not in log and cookie_of(headers).split("=", 1)[1] not in log


def test_repeated_failures_are_throttled(env):
    _, board, _ = env
    codes = [login(board, "nurse2", f"guess{i}")[0] for i in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    # Throttled: even the right password waits (the key is address + user name).
    assert login(board, "nurse2", PASSWORDS["nurse2"])[0] == 429


def test_commands_need_session_csrf_json_and_same_origin_and_are_journaled_as_the_user(env):
    suite, board, w = env
    _, headers, body = login(board, "nurse1", PASSWORDS["nurse1"])
    cookie, csrf = cookie_of(headers), body["session"]["csrf"]
    cmd = {"verb": "ack", "args": {"alarm_id": "env.temperature.high"}}
    assert board.post("/api/command", cmd)[0] == 401  # no session
    assert board.post("/api/command", cmd, {"Cookie": cookie})[0] == 403  # no CSRF token
    assert board.post("/api/command", cmd, {"Cookie": cookie, "X-CSRF-Token": "x" * 43})[0] == 403
    assert (
        board.post(
            "/api/command", cmd, {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        )[0]
        == 403
    )
    assert (
        board.post(
            "/api/command", cmd, {"Cookie": cookie, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
        )[0]
        == 403
    )
    assert (
        board.post(
            "/api/command",
            json.dumps(cmd).encode(),
            {"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": "text/plain"},
        )[0]
        == 415
    )
    ok_headers = {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": board.url}
    assert board.post("/api/command", {"verb": "frobnicate", "args": {}}, ok_headers)[0] == 400
    assert board.post("/api/command", {"verb": "ack", "args": {"alarm_id": "a/b#"}}, ok_headers)[0] == 400
    assert board.post("/api/command", {"verb": "bell_test", "args": {"room": "hotlab"}}, ok_headers)[0] == 400

    status, _, reply = board.post("/api/command", cmd, ok_headers)
    assert status == 200 and reply["ok"] is True and reply["result"]["type"] == "alarm.acknowledged"
    ev = w.wait_for(lambda x: [e for e in x.events(suite.site) if e["type"] == "alarm.acknowledged"], 5)
    assert ev[0]["actor"] == "nurse1"
    status, _, reply = board.post("/api/command", cmd, ok_headers)  # the daemon's refusal comes back as is
    assert status == 200 and reply["ok"] is False and "already acknowledged by nurse1" in reply["error"]

    # The bell test goes out under the configured verb, as the user.
    status, _, reply = board.post(
        "/api/command", {"verb": "bell_test", "args": {"room": "uptake3"}}, ok_headers
    )
    assert status == 200
    sent = [json.loads(p) for t, p, *_ in w.messages if t == suite.topic("cmd", "nurse1", "bell_test")]
    assert sent and sent[-1]["room"] == "uptake3"
    if not reply["ok"]:
        assert "unknown command 'bell_test'" in reply["error"]  # until the bells feature is merged

    status, _, _ = board.post("/api/logout", {}, ok_headers)
    assert status == 200
    assert board.post("/api/command", cmd, ok_headers)[0] == 401


def test_malformed_requests_are_refused_and_the_board_keeps_serving(env):
    _, board, _ = env
    assert status_of(raw(board, b"garbage\r\n\r\n")) == 400
    assert status_of(raw(board, b"GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n")) == 505
    assert (
        status_of(
            raw(board, b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999\r\n\r\n")
        )
        == 413
    )
    big = (
        b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n4800\r\n" + b" " * 0x4800 + b"\r\n0\r\n\r\n"
    )
    assert status_of(raw(board, big)) == 413  # a chunked body is held to the same limit
    assert status_of(raw(board, b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")) == 400
    assert status_of(raw(board, b"DELETE /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == 405
    assert board.post("/api/login", b"{not json")[0] == 400
    status, _, body = board.get("/api/state")
    state = json.loads(body)
    assert status == 200 and state["sections"]["health"]["daemon"] == "online"
    assert [a["alarm_id"] for a in state["sections"]["alarms"]] == ["env.temperature.high"]


def test_the_event_stream_starts_with_a_snapshot(env):
    _, board, _ = env
    with socket.create_connection(("127.0.0.1", board.port), 5) as s:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buf = b""
        while b"event: ping" not in buf:
            chunk = s.recv(65536)
            assert chunk, "stream closed"
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    assert b"text/event-stream" in head
    snap = next(line for line in body.split(b"\n") if line.startswith(b"data: ") and b'"meta"' in line)
    data = json.loads(snap[6:])
    assert data["meta"]["bell_test_verb"] == "bell_test" and "alarms" in data["sections"]


def test_a_board_that_requires_login_shows_nothing_without_one(make_suite, watcher):
    suite = make_suite({})
    board = start_board(suite, {"anonymous_view": False})
    assert board.get("/api/state")[0] == 401
    assert status_of(raw(board, b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == 401
    assert board.get("/")[0] == 200  # the page itself loads, and says "log in to view"


def test_the_board_announces_itself_and_says_goodbye_on_stop(make_suite, watcher):
    suite = make_suite({})
    board = start_board(suite, {"board_id": "station"})
    topic = suite.topic("board", "station", "status")
    st = watcher.wait_for(lambda w: (s := w.json_of(topic)) and s["state"] == "online" and s, 10)
    assert st["board_id"] == "station" and st["sessions"] == []
    assert board.proc.terminate(10) == 0
    st = watcher.wait_for(lambda w: (s := w.json_of(topic)) and s["state"] == "offline" and s, 5)
    assert st["reason"] == "stopped"
