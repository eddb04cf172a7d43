"""Soak: every simulator at ten times its normal event rate; resources must stay flat.

CI runs it for 2 minutes (SUITEMON_SOAK_S, default 120); the long mode is SUITEMON_SOAK_S=3600.
RSS, open file descriptors, asyncio tasks, journal size and event lag are sampled; the figures are
written to the test's log and to $SUITEMON_SOAK_OUT when set. Growth past the bounds fails.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import pytest
from helpers import free_port

SOAK_S = float(os.environ.get("SUITEMON_SOAK_S", "120"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soak_devices() -> dict:
    """Normal rates x10: polls 10x faster than the example suite's, values flapping on every poll."""
    devs = {}
    for i in range(6):
        devs[f"env{i}"] = {
            "kind": "modbus_points",
            "transport": "tcp",
            "host": "127.0.0.1",
            "port": free_port(),
            "poll_s": 0.2,
            "timeout_s": 0.1,
            "sim": {"drift": False},
            "limits": {"temperature": {"high": 28.0, "priority": "low"}},
        }
    return devs


@pytest.mark.soak
def test_soak_resources_stay_flat(make_suite, watcher):
    from soak_kinds import soak_extra_config, soak_extra_devices, stimulate

    suite = make_suite({**soak_devices(), **soak_extra_devices(free_port)}, extra=soak_extra_config())
    suite.start_sims()
    daemon = suite.start_daemon(watcher)
    for i in range(6):
        suite.sim(f"env{i}", "flap", low=20.0, high=30.0)
    journal = suite.tmp / "state" / "journal.sqlite3"
    samples = []
    warmup = min(20.0, SOAK_S / 6)
    t0 = time.monotonic()
    cycle = 0
    while (elapsed := time.monotonic() - t0) < SOAK_S:
        time.sleep(5)
        cycle += 1
        stimulate(suite, cycle)
        st = watcher.json_of(suite.topic("status")) or {}
        evs = watcher.events(suite.site)
        lag = None
        if evs:
            last = evs[-1]
            sent = datetime.fromisoformat(last["ts"].replace("Z", "+00:00")).timestamp()
            lag = max(0.0, time.time() - sent) if time.time() - sent < 60 else None
        samples.append(
            {
                "t": round(elapsed, 1),
                "rss_mb": round(rss_mb(daemon.pid), 1),
                "fds": fds(daemon.pid),
                "tasks": st.get("tasks"),
                "backlog": st.get("backlog"),
                "events": len(evs),
                "journal_mb": round(
                    sum(p.stat().st_size for p in journal.parent.glob("journal*")) / 2**20, 2
                ),
                "lag_s": round(lag, 3) if lag is not None else None,
            }
        )
        assert daemon.alive(), daemon.log_text()[-3000:]
    report = {"seconds": SOAK_S, "samples": samples}
    if out := os.environ.get("SUITEMON_SOAK_OUT"):
        Path(out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    steady = [s for s in samples if s["t"] >= warmup]
    assert len(steady) >= 2
    first, last = steady[0], steady[-1]
    assert last["rss_mb"] - first["rss_mb"] < 15, f"RSS grew {first['rss_mb']} -> {last['rss_mb']} MB"
    assert last["fds"] <= first["fds"] + 2, f"fds grew {first['fds']} -> {last['fds']}"
    assert last["tasks"] is not None and last["tasks"] <= first["tasks"] + 2, (
        f"tasks {first['tasks']} -> {last['tasks']}"
    )
    assert all((s["backlog"] or 0) < 200 for s in steady), "the outbox fell behind"
    assert last["events"] > first["events"] + 10 * (last["t"] - first["t"]), "the event stream stalled"
    final = watcher.json_of(suite.topic("status"))
    assert final["devices"] and set(final["devices"].values()) == {"ok"}, final[
        "devices"
    ]  # every kind kept up
    lags = [s["lag_s"] for s in steady if s["lag_s"] is not None]
    assert lags and max(lags) < 5.0
