"""Issue 15 item 5: the board (the only web-facing process) under the probes of the security review.

Each test reproduces one attack against a real board process on loopback and a broker that checks
passwords: parallel password guessing, flushing the lockout table, crowding out logged-in stations
with anonymous streams, exhausting connections, DNS rebinding, streams that outlive their session,
malformed requests, and a password file every local user can read."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from board_helpers import SUITE_ACL, BoardProc, SecuredMosquitto, cookie_of, raw, start_board, status_of
from conftest import Suite
from helpers import SUITEMON, Proc, free_port

PASSWORDS = {
    "board": "board-secret",
    "nurse1": "Nurse1-Pass!",
    "nurse2": "Nurse2-Pass!",
    "nurse3": "Nurse3-Pass!",
    "station1": "Station1-Pass!",
    "station2": "Station2-Pass!",
}
USERS = {
    "nurse1": {"name": "Nurse One"},
    "nurse2": {"name": "Nurse Two"},
    "nurse3": {"name": "Nurse Three"},
    "nurse4": {"name": "Nurse Four"},
    "station1": {"name": "Station", "kind": "station"},
    "station2": {"name": "Station Two", "kind": "station"},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A board with the default limits (the shipped configuration is what is probed)."""
    tmp = tmp_path_factory.mktemp("board-abuse")
    broker = SecuredMosquitto(tmp / "broker", PASSWORDS, SUITE_ACL).start()
    pw = tmp / "board.pw"
    pw.write_text(PASSWORDS["board"] + "\n")
    pw.chmod(0o600)
    suite = Suite(tmp / "suite", broker, {})
    try:
        board = start_board(
            suite, {"observer_username": "board", "observer_password_file": str(pw), "users": USERS}
        )
        yield suite, board, broker
    finally:
        suite.close()
        broker.stop()


def login(board, user, password, headers=None):
    return board.post("/api/login", {"username": user, "password": password}, headers)


def broker_refusals(broker) -> int:
    """Logins the broker itself refused so far (Mosquitto logs no client id for them)."""
    return (
        (broker.workdir / "mosquitto.log").read_text(errors="replace").count("disconnected, not authorised")
    )


def open_stream(board, cookie: str | None = None, host: str = "127.0.0.1") -> tuple[socket.socket, bytes]:
    """GET /events on a socket of its own: the socket and what came first (the head, maybe a snapshot)."""
    s = socket.create_connection(("127.0.0.1", board.port), 5)
    s.sendall(
        f"GET /events HTTP/1.1\r\nHost: {host}\r\n".encode()
        + (f"Cookie: {cookie}\r\n".encode() if cookie else b"")
        + b"\r\n"
    )
    buf = b""
    while b"\r\n\r\n" not in buf or (buf.startswith(b"HTTP/1.1 200") and b"event: snapshot" not in buf):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return s, buf


def closed_within(s: socket.socket, seconds: float) -> bool:
    """True once the server ends the stream (EOF); pings keep coming while it stays open."""
    s.settimeout(0.5)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if s.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def test_parallel_wrong_passwords_do_not_all_reach_the_broker(env):
    _, board, broker = env
    before = broker_refusals(broker)
    with ThreadPoolExecutor(40) as ex:
        codes = list(ex.map(lambda i: login(board, "nurse1", f"guess-{i}")[0], range(40)))
    time.sleep(0.5)  # let the broker write its log
    reached = broker_refusals(broker) - before
    assert 1 <= reached <= 5, f"{reached} of 40 parallel guesses reached the broker"
    assert codes.count(401) == reached and codes.count(429) == 40 - reached, codes
    assert login(board, "nurse1", PASSWORDS["nurse1"])[0] == 429  # locked, even with the right password


def test_made_up_names_cannot_flush_a_lockout(env):
    _, board, _ = env
    assert [login(board, "nurse2", f"guess{i}")[0] for i in range(6)] == [401] * 5 + [429]
    # The attack: fill the failure table with names that are nobody's, hoping to evict the lockout.
    with ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda i: login(board, f"nobody{i}", "x")[0], range(300)))
    assert set(codes) <= {401, 429}
    assert codes.count(429) >= 280, "made-up names must share one bucket per address, not get one each"
    assert login(board, "nurse2", PASSWORDS["nurse2"])[0] == 429
    # One nurse's lockout is hers: a colleague at the same station still logs in.
    assert login(board, "nurse3", PASSWORDS["nurse3"])[0] == 200


def test_anonymous_streams_cannot_lock_out_logged_in_stations(env):
    _, board, _ = env
    streams = [open_stream(board) for _ in range(64)]
    try:
        served = [buf for _, buf in streams if buf.startswith(b"HTTP/1.1 200")]
        refused = [buf for _, buf in streams if status_of(buf) == 503]
        assert 1 <= len(served) <= 8 and len(served) + len(refused) == 64
        assert b"anonymous" in refused[0]
        status, headers, _ = login(board, "station1", PASSWORDS["station1"])
        assert status == 200
        s, buf = open_stream(board, cookie_of(headers))
        s.close()
        assert buf.startswith(b"HTTP/1.1 200") and b"event: snapshot" in buf, buf[:300]
    finally:
        for s, _ in streams:
            s.close()


def test_a_foreign_host_header_is_refused(env):
    """DNS rebinding: evil.example now resolves to the board; the browser sends Host: evil.example and
    treats the board as evil.example's own origin, so the Origin check alone passes."""
    _, board, _ = env
    evil = f"evil.example:{board.port}"
    h = {"Host": evil, "Origin": f"http://{evil}"}
    status, _, body = login(board, "nurse4", "Nurse4-not-in-broker", h)
    assert status == 421 and "host" in body["error"]
    status, _, _ = board.get("/api/state", {"Host": evil})
    assert status == 421
    assert status_of(raw(board, f"GET /events HTTP/1.1\r\nHost: {evil}\r\n\r\n".encode())) == 421
    assert status_of(raw(board, b"GET /api/state HTTP/1.1\r\n\r\n")) == 400  # no Host at all
    for ok in (f"127.0.0.1:{board.port}", f"localhost:{board.port}", "[::1]", socket.gethostname()):
        assert board.get("/api/session", {"Host": ok})[0] == 200, ok


def test_streams_close_on_logout(env):
    _, board, _ = env
    status, headers, body = login(board, "station2", PASSWORDS["station2"])
    assert status == 200
    cookie, csrf = cookie_of(headers), body["session"]["csrf"]
    s, buf = open_stream(board, cookie)
    try:
        assert buf.startswith(b"HTTP/1.1 200")
        assert not closed_within(s, 1.2), "a live stream must stay open"
        status, _, _ = board.post(
            "/api/logout", {}, {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": board.url}
        )
        assert status == 200
        assert closed_within(s, 3.0), "the stream of a logged-out session kept running"
    finally:
        s.close()


def test_malformed_requests_get_400_never_a_500_or_a_traceback(env):
    suite, board, _ = env
    deep = b'{"username":' + b"[" * 7000 + b"]" * 7000 + b"}"  # deeper than Python's JSON recursion limit
    lone_surrogate = b'{"username":"nurse4","password":"\\ud800"}'  # valid JSON, not encodable UTF-8
    for body in (deep, lone_surrogate, b"{not json", b"[1]", b'{"username": 5, "password": []}', b"\xff\xfe"):
        status, _, reply = board.post("/api/login", body)
        assert status == 400, (body[:40], status, reply)
        assert "Traceback" not in json.dumps(reply)
    for request in (
        b"garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET \x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ):
        response = raw(board, request)
        assert status_of(response) == 400, (request[:50], response[:200])
        assert b"Traceback" not in response
    assert 400 <= status_of(raw(board, b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")) < 500
    assert (
        status_of(
            raw(board, b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999\r\n\r\n")
        )
        == 413
    )
    assert board.get("/healthz")[0] in (200, 503)  # still serving (no daemon in this suite: 503)
    log = (suite.tmp / "board.log").read_text()
    assert "Traceback" not in log and '"status": 500' not in log


def test_the_total_number_of_connections_is_capped(make_suite):
    suite = make_suite({})
    board = start_board(suite, {"max_connections": 16, "idle_connection_s": 3})
    idle = [socket.create_connection(("127.0.0.1", board.port), 5) for _ in range(15)]
    idle.append(socket.create_connection(("127.0.0.1", board.port), 5))
    idle[-1].sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a slow client: never finishes its headers
    try:
        response = raw(board, b"GET /api/session HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status_of(response) == 503 and b"too many connections" in response
        # Connections that send no complete request are closed by the board, freeing their places.
        assert all(closed_within(s, 8) for s in idle)
        assert board.get("/api/session")[0] == 200
    finally:
        for s in idle:
            s.close()
    assert "board connection refused: at the connection cap" in suite.procs[-1].log_text()


def test_the_board_refuses_a_world_readable_password_file(make_suite, tmp_path):
    pw = tmp_path / "board.pw"
    pw.write_text("board-secret\n")
    pw.chmod(0o644)
    suite = make_suite({})
    suite.data["board"] = {
        "port": free_port(),
        "observer_username": "board",
        "observer_password_file": str(pw),
    }
    suite.write()
    p = Proc([*SUITEMON, "board", "-c", str(suite.path)], tmp_path / "board.log")
    suite.procs.append(p)
    try:
        rc = p.proc.wait(15)
    except Exception:
        pytest.fail("the board started with a password file every local user can read")
    assert rc == 2
    assert "accessible to every user" in p.log_text() and "board.observer_password_file" in p.log_text()
    pw.chmod(0o600)
    BoardProc(suite, suite.data["board"]["port"])  # the same config with a private file serves


def test_streams_close_when_the_session_expires(tmp_path):
    """In-process (a session's idle limit is minutes; the board's clock is moved instead of waiting)."""
    from aiohttp import ClientSession, ClientTimeout, CookieJar

    from suitemon.daemon.board.server import Board
    from suitemon.daemon.config import load_config

    secured = SecuredMosquitto(tmp_path / "broker", {"nurse1": PASSWORDS["nurse1"]}, SUITE_ACL).start()
    suite = Suite(tmp_path / "suite", secured, {}, {"board": {"port": free_port(), "users": USERS}})
    cfg = load_config(str(suite.path))
    shift = [0.0]

    async def main():
        board = Board(cfg, cfg.board)
        board.sessions.clock = lambda: time.monotonic() + shift[0]
        await board.start()
        url = f"http://127.0.0.1:{cfg.board.port}"
        try:
            async with ClientSession(
                timeout=ClientTimeout(total=20), cookie_jar=CookieJar(unsafe=True)
            ) as http:
                r = await http.post(
                    url + "/api/login", json={"username": "nurse1", "password": PASSWORDS["nurse1"]}
                )
                assert r.status == 200, await r.text()
                stream = await http.get(url + "/events")
                assert stream.status == 200
                first = await asyncio.wait_for(stream.content.readline(), 5)
                assert first
                shift[0] = cfg.board.session.idle_s + 1  # the nurse walked away
                ended = time.monotonic()
                await asyncio.wait_for(stream.content.read(), 5)  # returns at EOF only
                assert time.monotonic() - ended < 3.0
                assert not board.hub.clients and not board.sessions.by_id
        finally:
            await board.stop()

    try:
        asyncio.run(main())
    finally:
        secured.stop()
