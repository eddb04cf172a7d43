"""Test plumbing for the suite board: a broker that checks passwords, the board process, a browser."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import SUITEMON, Mosquitto, Proc, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The committed screenshots (docs/screenshots) are refreshed with SUITEMON_SCREENSHOTS=docs/screenshots;
# ordinary runs write them to a temp dir so that running the tests leaves the tree clean.
SCREENSHOTS = Path(
    os.environ.get("SUITEMON_SCREENSHOTS") or Path(tempfile.gettempdir()) / "suitemon-screenshots"
)


def need_browser():
    """Playwright and Debian's chromium, or a skip; under CI a missing browser is a failure."""
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "pip package playwright (test dependency)"
    if missing is None and not Path(CHROMIUM).exists():
        missing = "Debian packages chromium chromium-driver"
    if missing:
        msg = f"board browser tests need {missing}; .ci/run must install it"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


class SecuredMosquitto(Mosquitto):
    """Mosquitto with a password file and the pattern ACL the board's design relies on."""

    def __init__(self, workdir: Path, users: dict[str, str], acl: str):
        super().__init__(workdir)
        self.users = users
        self.acl = acl

    def start(self) -> SecuredMosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pw = self.workdir / "passwd"
        pw.write_text("")
        for user, password in self.users.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(pw), user, password], check=True, capture_output=True
            )
        acl = self.workdir / "acl"
        acl.write_text(self.acl)
        conf = self.workdir / "mosquitto.conf"
        # As root, Mosquitto would drop to its own user and could not read pytest's private tmp dir.
        run_as = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"{run_as}listener {self.port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
            f"password_file {pw}\nacl_file {acl}\nmax_queued_messages 100000\n"
        )
        self.log = open(self.workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(conf)], stdout=self.log, stderr=self.log)
        wait_until(self._accepting, 10, what=f"mosquitto on port {self.port}")
        return self


# The shipped-broker pattern: the daemon may do everything, the board reads and announces
# itself, every person writes only their own command topics and reads only their replies.
SUITE_ACL = """\
user suitemon
topic readwrite suitemon/#

user board
topic read suitemon/#
topic write suitemon/+/board/#

user watcher
topic readwrite suitemon/#

pattern write suitemon/+/cmd/%u/#
pattern read suitemon/+/reply/%u
"""


class BoardProc:
    def __init__(self, suite, port: int, name: str = "board"):
        self.suite = suite
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = Proc(
            [*SUITEMON, "board", "-c", str(suite.path), "--log-format", "json"], suite.tmp / f"{name}.log"
        )
        suite.procs.append(self.proc)
        wait_until(self._up, 20, what="board HTTP server")

    def _up(self) -> bool:
        if not self.proc.alive():
            raise AssertionError(f"board exited early:\n{self.proc.log_text()[-3000:]}")
        try:
            urllib.request.urlopen(self.url + "/api/session", timeout=0.5).read()
            return True
        except (urllib.error.URLError, OSError):
            return False

    def get(self, path: str, headers: dict | None = None):
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def post(self, path: str, body, headers: dict | None = None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Content-Type": "application/json", **(headers or {})}
        req = urllib.request.Request(self.url + path, data=data, headers=h, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, dict(err.headers), json.loads(raw) if raw else {}


def off_loop(fn, *args, **kwargs):
    """Run fn in a worker thread: Playwright's sync API keeps an event loop running in this one,
    and the suite's simulator control uses asyncio.run."""
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(fn, *args, **kwargs).result(60)


def start_board(suite, board: dict | None = None) -> BoardProc:
    port = free_port()
    suite.data["board"] = {"port": port, **(board or {})}
    suite.write()
    return BoardProc(suite, port)


def launch_browser(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=False)
    return path


def points_env(port: int | None = None, **limits) -> dict:
    return {
        "kind": "modbus_points",
        "name": "Hot-lab environment",
        "location": "hotlab",
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": port or free_port(),
        "poll_s": 0.2,
        "timeout_s": 0.2,
        "sim": {"drift": False},
        "limits": limits or {"temperature": {"high": 28.0, "hysteresis": 0.5, "priority": "low"}},
    }


def cookie_of(headers) -> str:
    return headers["Set-Cookie"].split(";")[0]


def raw(board, data: bytes) -> bytes:
    """Send bytes on a connection of their own; return the response (head and Content-Length body).
    No half-close: like a browser, and aiohttp closes a connection at the client's EOF."""
    with socket.create_connection(("127.0.0.1", board.port), 5) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole request was read: the answer is still there to read
        out = b""
        while True:
            head, sep, body = out.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if sep and length and len(body) >= int(length.group(1)):
                return out
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk


def status_of(response: bytes) -> int:
    m = re.match(rb"HTTP/\d\.\d (\d{3}) ", response)
    assert m, response[:200]
    return int(m.group(1))


__all__ = [
    "SUITE_ACL",
    "BoardProc",
    "SecuredMosquitto",
    "cookie_of",
    "launch_browser",
    "need_browser",
    "off_loop",
    "points_env",
    "raw",
    "shot",
    "start_board",
    "status_of",
]
