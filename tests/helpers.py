"""Test plumbing: real Mosquitto, real processes, waits on conditions instead of sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
SUITEMON = [sys.executable, "-m", "suitemon.daemon.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    pred: Callable[[], Any],
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
    *,
    cond: threading.Condition | None = None,
    last: Callable[[], Any] | None = None,
):
    """THE wait of the test suite: until ``pred()`` is truthy (returned), else AssertionError naming
    ``what`` and, with ``last``, the last things seen. With ``cond`` it sleeps on that condition
    (woken by whoever changes the state: MQTT callbacks, datagram readers), else it polls."""
    deadline = time.monotonic() + timeout
    with cond if cond is not None else contextlib.nullcontext():
        while True:
            v = pred()
            if v:
                return v
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(_timed_out(timeout, what, last))
            if cond is not None:
                cond.wait(left)
            else:
                time.sleep(min(interval, left))


async def wait_until_async(
    pred: Callable[[], Any],
    timeout: float,
    interval: float = 0.01,
    what: str = "condition",
    *,
    last: Callable[[], Any] | None = None,
):
    """``wait_until`` inside an event loop: yields to the loop between checks; ``pred`` may be async."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if inspect.isawaitable(v):
            v = await v
        if v:
            return v
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(_timed_out(timeout, what, last))
        await asyncio.sleep(min(interval, left))


def _timed_out(timeout: float, what: str, last: Callable[[], Any] | None) -> str:
    return f"timed out after {timeout} s waiting for {what}" + (
        f"; last: {last()}" if last is not None else ""
    )


class ManualClock:
    """A suitemon.daemon.clock.Clock that moves only when told: ``advance(s)`` fires, in deadline
    order, every timer that falls due (timers armed by a firing timer included)."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start
        self._timers: list[list[Any]] = []  # [due, seq, fn, args, cancelled]
        self._seq = 0

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any):
        self._seq += 1
        entry = [self.now + max(0.0, delay), self._seq, fn, args, False]
        self._timers.append(entry)

        class Handle:
            def cancel(self_inner) -> None:
                entry[4] = True

        return Handle()

    def pending(self) -> int:
        return sum(1 for t in self._timers if not t[4])

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while True:
            live = sorted(
                (t for t in self._timers if not t[4] and t[0] <= target), key=lambda t: (t[0], t[1])
            )
            if not live:
                break
            due = live[0]
            due[4] = True
            self.now = max(self.now, due[0])
            due[2](*due[3])
        self._timers = [t for t in self._timers if not t[4]]
        self.now = target


# -- TOML writing (tests build configs from dicts) ----------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, Path):
        return json.dumps(str(v))
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def dump_toml(data: dict, prefix: str = "") -> str:
    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(
                f"{json.dumps(k) if not k.replace('_', '').replace('-', '').isalnum() else k} = {_toml_value(v)}"
            )
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        key = k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)
        name = f"{prefix}.{key}" if prefix else key
        out += f"\n[{name}]\n" + dump_toml(v, name)
    return out


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# -- Mosquitto ------------------------------------------------------------------
class Mosquitto:
    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = ""):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen | None = None
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

    def start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"max_queued_messages 100000\n{self.extra_conf}\n"
        )
        self.log = open(self.workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(conf)], stdout=self.log, stderr=self.log)
        wait_until(self._accepting, 10, what=f"mosquitto on port {self.port}")
        return self

    def _accepting(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
            self.log.close()


# -- MQTT subscriber ---------------------------------------------------------------
class Watcher:
    """A real MQTT client recording everything under a filter; waits on a condition variable."""

    def __init__(
        self,
        port: int,
        topic: str = "suitemon/#",
        protocol: int = paho.MQTTv5,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ):
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self.retained: dict[str, bytes] = {}
        self.cond = threading.Condition()
        self.topic = topic
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"watch-{os.getpid()}-{id(self)}",
            protocol=protocol,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(self.topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self.port = port

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain), time.monotonic()))
            self.retained[msg.topic] = msg.payload
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[Watcher], Any], timeout: float = 10.0, what: str = "message"):
        return wait_until(
            lambda: pred(self),
            timeout,
            what=what,
            cond=self.cond,
            last=lambda: [(t, p[:200]) for t, p, *_ in self.messages[-15:]],
        )

    def json_of(self, topic: str) -> Any:
        p = self.retained.get(topic)
        return json.loads(p) if p else None

    def events(self, site: str) -> list[dict]:
        """The site's events so far, in arrival order (a new list; the dicts are shared, do not edit them).

        Each message is parsed once: ``wait_for`` predicates call this on every message that arrives,
        and parsing the whole history every time made the busy tests quadratic in CPU."""
        t = f"suitemon/{site}/event"
        with self.cond:  # re-entrant; scenario threads share one watcher
            msgs = self.messages  # a subclass may start a new list
            cache = self.__dict__.setdefault("_events_parsed", {})
            scanned, parsed, of = cache.get(t, (0, [], None))
            if of is not msgs or scanned > len(msgs):
                scanned, parsed = 0, []
            upto = len(msgs)
            parsed.extend(json.loads(p) for top, p, *_ in msgs[scanned:upto] if top == t)
            cache[t] = (upto, parsed, msgs)
            return list(parsed)

    def publish(self, topic: str, obj: Any, qos: int = 1, retain: bool = False) -> None:
        payload = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- processes -------------------------------------------------------------------------
class Proc:
    def __init__(self, args: list[str], logfile: Path, env: dict | None = None):
        self.logfile = logfile
        self._log = open(logfile, "ab")
        e = dict(os.environ)
        e.setdefault("PYTHONUNBUFFERED", "1")
        if env:
            e.update(env)
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=e, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 10) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def log_text(self) -> str:
        self._log.flush()
        return self.logfile.read_text(errors="replace")

    def close(self) -> None:
        if self.alive():
            self.kill9()
        self._log.close()
