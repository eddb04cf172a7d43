"""kill -9 at random moments of a busy run: the journal verifies after every restart, open alarms
come back, and the subscriber sees every event exactly once by id, with no gap in the sequence."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time

import pytest
from helpers import REPO, free_port

KILLS = int(os.environ.get("SUITEMON_KILLS", "20"))


@pytest.mark.slow  # ~1-2 min on a quiet machine (20 kill -9 and restarts); started first, see conftest
def test_sigkill_at_random_moments_loses_and_invents_nothing(make_suite, watcher):
    suite = make_suite(
        {
            "env": {
                "kind": "modbus_points",
                "transport": "tcp",
                "host": "127.0.0.1",
                "port": free_port(),
                "poll_s": 0.02,
                "timeout_s": 0.2,
                "sim": {"drift": False},
                "limits": {"temperature": {"high": 28.0, "priority": "low"}},
            },
            "env2": {
                "kind": "modbus_points",
                "transport": "tcp",
                "host": "127.0.0.1",
                "port": free_port(),
                "poll_s": 0.1,
                "timeout_s": 0.1,
                "sim": {"drift": False},
                "limits": {"humidity": {"high": 50.0, "priority": "medium"}},
            },
        },
        extra={
            "alarm_types": {
                "point.high": {"priority": "medium", "kind": "technical", "ladder": "deterioration"}
            }
        },
    )
    suite.start_sims()
    suite.sim("env2", "set", humidity=70.0)  # one alarm stays open (and escalates) the whole time
    suite.sim("env", "flap", low=20.0, high=30.0)  # and one flaps on every poll: a steady event stream
    rng = random.Random(int(os.environ.get("SUITEMON_SEED", "1234")))
    daemon = suite.start_daemon(watcher)
    journal = suite.tmp / "state" / "journal.sqlite3"
    for i in range(KILLS):
        time.sleep(rng.uniform(0.05, 0.6))
        daemon.kill9()
        r = subprocess.run(
            [sys.executable, "-m", "suitemon.daemon.cli", "journal", "verify", "--journal", str(journal)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert r.returncode == 0, f"after kill {i + 1}: {r.stderr}"
        daemon = suite.start_daemon(watcher, name=f"daemon{i + 1}")
        started = watcher.wait_for(
            lambda w, pid=daemon.pid: [
                e for e in w.events(suite.site) if e["type"] == "daemon.started" and e["data"]["pid"] == pid
            ],
            20,
            what="restart event",
        )
        assert started[0]["data"]["open_alarms"] >= 1  # the humidity alarm was restored
    suite.sim("env", "flap")
    daemon.terminate()

    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    rows = db.execute("SELECT seq, event_id FROM events ORDER BY seq").fetchall()
    delivered = db.execute("SELECT upto FROM delivery").fetchone()[0]
    db.close()
    assert delivered == rows[-1][0]  # everything was delivered in the end
    journal_ids = {seq: eid for seq, eid in rows}

    def all_seen(w):
        return {e["seq"] for e in w.events(suite.site)} >= set(journal_ids)

    watcher.wait_for(all_seen, 30, what="every journal event on MQTT")
    by_seq: dict[int, set[str]] = {}
    for e in watcher.events(suite.site):
        by_seq.setdefault(e["seq"], set()).add(e["event_id"])
    # No invented events: each seq carries exactly the journal's event id; none missing.
    assert all(ids == {journal_ids[s]} for s, ids in by_seq.items())
    assert set(by_seq) == set(journal_ids)
    humidity = [e for e in watcher.events(suite.site) if e["alarm_id"] == "env2.humidity.high"]
    assert [e["type"] for e in humidity].count("alarm.raised") == 1  # restored, not raised again
    steps = [e["data"]["step"] for e in humidity if e["type"] == "alarm.notify"]
    assert steps[:3] == [0, 1, 2]  # escalation went on across the kills, each step notified once first
