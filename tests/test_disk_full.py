"""Disk full on the state directory: a HIGH technical alarm over MQTT and a clear log line, alarms still
reach MQTT, and the journal is not corrupted. Uses a real, tiny tmpfs (needs root, as CI has)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO, free_port


@pytest.fixture
def tiny_state_dir(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): disk-full test needs root")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def fill(path) -> None:
    """Write until the filesystem says no space is left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_disk_full_raises_high_alarm_keeps_publishing_and_recovers(make_suite, watcher, tiny_state_dir):
    suite = make_suite(
        {
            "env": {
                "kind": "modbus_points",
                "transport": "tcp",
                "host": "127.0.0.1",
                "port": free_port(),
                "poll_s": 0.1,
                "timeout_s": 0.1,
                "sim": {"drift": False},
                "limits": {"temperature": {"high": 28.0, "priority": "medium"}},
            }
        }
    )
    suite.data["state"]["dir"] = str(tiny_state_dir)
    suite.write()
    suite.start_sims()
    daemon = suite.start_daemon(watcher)
    filler = tiny_state_dir / "filler"
    fill(filler)

    suite.sim("env", "set", temperature=30.0)  # an alarm must get out although it cannot be journaled
    fault_t = suite.topic("alarm", "daemon.journal_fault")
    fault = watcher.wait_for(
        lambda w: (a := w.json_of(fault_t)) and a["state"] == "active" and a, 15, what="journal fault alarm"
    )
    assert fault["priority"] == "high" and fault["kind"] == "technical"
    alarm = watcher.wait_for(
        lambda w: (
            (a := w.json_of(suite.topic("alarm", "env.temperature.high"))) and a["state"] == "active" and a
        ),
        10,
        what="the alarm raised during the fault",
    )
    assert alarm["priority"] == "medium"
    assert "JOURNAL WRITE FAILED" in daemon.log_text()
    status = watcher.wait_for(
        lambda w: (s := w.json_of(suite.topic("status"))) and s.get("journal_fault") and s, 10
    )
    assert "full" in status["journal_fault"]

    filler.unlink()
    watcher.wait_for(lambda w: w.json_of(fault_t)["state"] == "closed", 15, what="fault cleared")
    incident = watcher.wait_for(
        lambda w: [e for e in w.events(suite.site) if e["type"] == "daemon.journal_fault"], 10
    )
    assert incident[0]["data"]["since"] and incident[0]["data"]["until"]
    raised = [
        e
        for e in watcher.events(suite.site)
        if e["type"] == "alarm.raised" and e["alarm_id"] == "env.temperature.high"
    ]
    assert len({e["event_id"] for e in raised}) == 1  # same event: sent from memory, then from the journal
    assert daemon.terminate() == 0
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "suitemon.daemon.cli",
            "journal",
            "verify",
            "--journal",
            str(tiny_state_dir / "journal.sqlite3"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
