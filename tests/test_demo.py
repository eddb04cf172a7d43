"""The demo runs from a clean clone with one command and exits cleanly after --duration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO


def run_demo(*args: str, env: dict | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "suitemon.daemon.cli", "demo", *args], capture_output=True, text=True,
                          cwd=REPO, env=e, timeout=timeout)


@pytest.mark.slow
def test_demo_runs_for_its_duration_and_exits_zero():
    r = run_demo("--duration", "20")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "broker mosquitto" in r.stdout
    last = [line for line in r.stdout.splitlines() if "daemon online" in line]
    assert last, r.stdout
    assert "lost 0" in last[-1], last[-1]  # every simulated device answered


def test_demo_falls_back_to_the_embedded_broker_without_mosquitto(tmp_path):
    pytest.importorskip("amqtt")
    # A PATH with python but without mosquitto, as on a fresh machine.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("python3", "socat"):
        if p := shutil.which(tool):
            (bindir / tool).symlink_to(p)
    env = {"PATH": str(bindir), "SUITEMON_NO_SYSTEM_MOSQUITTO": "1"}
    r = run_demo("--duration", "8", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "broker amqtt" in r.stdout and "MQTT 3.1.1" in r.stdout
    assert "daemon online" in r.stdout
