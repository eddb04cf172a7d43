"""The demo runs from a clean clone with one command, prints endpoints that answer, plays the tour."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request

import pytest
from helpers import REPO, Watcher, wait_until


def run_demo(*args: str, env: dict | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", "demo", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=e,
        timeout=timeout,
    )


class LiveDemo:
    """A demo process whose stdout is read line by line while it runs."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "suitemon.daemon.cli", "demo", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(s, buf), daemon=True)
            for s, buf in ((self.proc.stdout, self.lines), (self.proc.stderr, self.err))
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, buf: list[str]) -> None:
        for line in stream:
            buf.append(line.rstrip("\n"))

    def line(self, pattern: str, timeout: float = 30) -> re.Match:
        def found():
            if self.proc.poll() is not None and not any(re.search(pattern, x) for x in self.lines):
                raise AssertionError("demo exited:\n" + "\n".join(self.lines[-30:] + self.err[-30:]))
            return next((m for x in self.lines if (m := re.search(pattern, x))), None)

        return wait_until(found, timeout, interval=0.1, what=f"demo line /{pattern}/")

    def finish(self, timeout: float = 60) -> int:
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.slow
def test_demo_runs_for_its_duration_and_exits_zero():
    r = run_demo("--duration", "20")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "broker mosquitto" in r.stdout
    last = [line for line in r.stdout.splitlines() if "daemon online" in line]
    assert last, r.stdout
    assert "lost 0" in last[-1], last[-1]  # every simulated device answered
    assert "tour: stopped at" in r.stdout  # --duration ends the tour early: not a failure


def test_demo_endpoints_answer_and_open_alarms_move():
    demo = LiveDemo("--duration", "18")
    try:
        broker = demo.line(r"^demo: broker mosquitto on 127\.0\.0\.1:(\d+) \(MQTT 5\)")
        dicom = demo.line(
            r"^demo: DICOM receiver (\w+)@([\d.]+):(\d+); allowed calling AE (\w+) from ([\d.]+)"
        )
        board = demo.line(r"^demo: board (http://[\d.]+:\d+/)  \(log in as (\w+)")
        control = demo.line(r"^demo: simulator control ([\d.]+):(\d+)")

        # The broker: the daemon's retained status is there.
        w = Watcher(int(broker.group(1)))
        try:
            w.wait_for(
                lambda w: (s := w.json_of("suitemon/petct-north/status")) and s["state"] == "online",
                20,
                what="daemon online on the printed broker",
            )
        finally:
            w.close()
        # The DICOM receiver: a C-ECHO with the printed calling AE title.
        ae, host, port, caller = dicom.group(1), dicom.group(2), dicom.group(3), dicom.group(4)
        echo = subprocess.run(
            ["/usr/bin/echoscu", "-aet", caller, "-aec", ae, host, port],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert echo.returncode == 0, echo.stdout + echo.stderr
        # The board: its page, and its state once it sees the daemon.
        with urllib.request.urlopen(board.group(1), timeout=10) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()
        assert board.group(2) == "nurse1"
        # The simulator control port lists the simulated devices.
        from suitemon.simulators.host import send_control

        listed = asyncio.run(send_control(control.group(1), int(control.group(2)), "*", "list"))
        assert "bells" in listed and "ups" in listed

        # The tour's first call opens an alarm and its cancel closes it; the log shows both.
        demo.line(r"open alarms 1 \(bells\.uptake2\.call\)", 20)
        assert demo.finish() == 0, "\n".join(demo.lines[-20:] + demo.err[-20:])
        opened = next(i for i, x in enumerate(demo.lines) if "open alarms 1 (bells.uptake2.call)" in x)
        assert any("open alarms 0" in x for x in demo.lines[opened:]), demo.lines
        # Nothing went wrong, so nothing says so: no error lines (paho's after a clean disconnect were).
        assert not [x for x in demo.err if '"level": "error"' in x], demo.err
    finally:
        demo.kill()


@pytest.mark.slow
def test_tour_plays_every_step_and_passes_at_four_times_speed():
    # examples/scenarios/tour.toml, about three minutes at speed 1; here 45 s with the timers scaled.
    r = run_demo("--speed", "4", "--duration", "50", timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    assert "tour: PASSED" in r.stdout, r.stdout[-4000:]
    for part in range(1, 6):
        assert f"TOUR {part}/5" in r.stdout
    assert "FAILED" not in r.stdout
    counts = {int(n) for n in re.findall(r"open alarms (\d+)", r.stdout)}
    assert {0, 1, 2} <= counts, counts  # the live summary follows the alarms up and down


def test_demo_falls_back_to_the_embedded_broker_without_mosquitto(tmp_path):
    pytest.importorskip("amqtt")
    # A PATH with python but without mosquitto, as on a fresh machine.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("python3", "socat"):
        if p := shutil.which(tool):
            (bindir / tool).symlink_to(p)
    env = {"PATH": str(bindir), "SUITEMON_NO_SYSTEM_MOSQUITTO": "1"}
    r = run_demo("--duration", "8", "--no-tour", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "broker amqtt" in r.stdout and "MQTT 3.1.1" in r.stdout
    assert "daemon online" in r.stdout
    # Quiet unless something is wrong: the embedded broker starts and stops without a word.
    assert r.stderr.strip() == "", r.stderr[-3000:]


def test_demo_refuses_an_invalid_scenario_with_its_key_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[step]]\nat = 1\nsay = "hello"\ncommand = "ack"\n')
    r = run_demo("--scenario", str(bad), "--duration", "3", timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "step.0" in r.stderr and "Traceback" not in r.stderr
