"""SIGTERM (bounded, clean, nothing half-written) and SIGHUP (reload if valid, keep the old one if not)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time

import pytest
from helpers import REPO, SUITEMON
from notify_socket import NotifySocket
from service_helpers import points_device, start_daemon_env

from suitemon.daemon.journal import Journal


@pytest.fixture
def notify(tmp_path):
    s = NotifySocket(tmp_path)
    yield s
    s.close()


def event_of(watcher, site, type_, where=lambda e: True):
    def pred(w):
        for e in w.events(site):
            if e["type"] == type_ and where(e):
                return e
        return None

    return pred


def test_sigterm_mid_traffic_exits_zero_within_5_s_with_the_journal_whole(make_suite, watcher, notify):
    flappy = points_device(poll_s=0.05)
    slow = points_device(poll_s=0.2, timeout_s=3.0)  # a poll in flight when the signal comes
    suite = make_suite({"env": flappy, "slow": slow})
    suite.start_sims()
    d = start_daemon_env(suite, watcher, notify.env(watchdog_s=3.0))
    notify.wait_for(lambda n: n.first("READY", "1"), 15, "READY=1")
    suite.sim("slow", "fault", delay_s=2.5)
    suite.sim("env", "flap", low=20.0, high=30.0)  # an alarm raised and cleared on every poll
    watcher.wait_for(
        lambda w: len([e for e in w.events(suite.site) if e["type"] == "alarm.cleared"]) >= 10,
        10,
        what="a stream of alarm events",
    )

    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(10)
    took = time.monotonic() - t0
    assert rc == 0, d.log_text()[-2000:]
    assert took < 5.0, f"stop took {took:.2f} s"
    print(f"SIGTERM to exit: {took:.3f} s")

    st = watcher.wait_for(
        lambda w: (s := w.json_of(suite.topic("status"))) and s["state"] == "offline" and s,
        5,
        what="offline status",
    )
    assert st["reason"] == "stopped"
    assert notify.first("STOPPING", "1") is not None

    journal_path = suite.tmp / "state" / "journal.sqlite3"
    r = subprocess.run(
        [*SUITEMON, "journal", "verify", "--journal", str(journal_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0 and "hash chain intact" in r.stdout, r.stderr
    j = Journal(journal_path)
    try:
        events = j.events_after(0, limit=100_000)
    finally:
        j.close()
    assert events[-1].type == "daemon.stopped"
    # Whatever reached the broker was durable first: every published event is in the journal.
    in_journal = {e.event_id for e in events}
    published = {e["event_id"] for e in watcher.events(suite.site)}
    assert published and published <= in_journal


def test_sighup_applies_a_valid_config_live_and_names_what_needs_a_restart(make_suite, watcher, notify):
    suite = make_suite({"env": points_device(), "aux": points_device()})
    suite.start_sims()
    d = start_daemon_env(suite, watcher, notify.env(watchdog_s=3.0))
    notify.wait_for(lambda n: n.first("READY", "1"), 15, "READY=1")
    suite.sim("env", "set", temperature=25.0)
    suite.sim("aux", "fault", silent=True)
    watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", "aux.comm_lost"))) and a["state"] == "active",
        10,
        what="aux comm lost",
    )
    assert watcher.json_of(suite.topic("alarm", "env.temperature.high")) is None

    new = copy.deepcopy(suite.data)
    new["devices"]["env"]["limits"]["temperature"]["high"] = 24.0  # live: restart the runner
    del new["devices"]["aux"]  # live: runner stopped, alarms closed
    new["ladders"]["deterioration"]["steps"][0]["timeout_s"] = 5.0  # live
    new["mqtt"]["keepalive_s"] = 7  # needs a restart
    suite.data = new
    suite.write()
    t_hup = time.monotonic()
    os.kill(d.pid, signal.SIGHUP)

    ev = watcher.wait_for(event_of(watcher, suite.site, "config.reloaded"), 10, what="config.reloaded")
    data = ev["data"]
    assert sorted(data["applied"]) == ["devices", "ladders"]
    assert data["restart_required"] == ["mqtt"]
    assert data["devices"] == {"added": [], "removed": ["aux"], "restarted": ["env"]}
    assert data["closed_alarms"] == ["aux.comm_lost"]
    assert "systemctl restart" in data["message"] and "mqtt" in data["message"]

    # The new limit is in force; the removed device's alarm and retained state are gone.
    watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", "env.temperature.high"))) and a["state"] == "active",
        10,
        what="alarm under the new limit",
    )
    closed = watcher.json_of(suite.topic("alarm", "aux.comm_lost"))
    assert closed["state"] == "closed" and closed["closed_reason"] == "device removed from the configuration"
    watcher.wait_for(
        lambda w: w.retained.get(suite.topic("device", "aux", "state")) == b"", 5, what="aux state cleared"
    )
    status = watcher.wait_for(
        lambda w: (s := w.json_of(suite.topic("status"))) and "aux" not in s["devices"] and s,
        15,
        what="status without aux",
    )
    assert status["pid"] == d.pid and d.alive()

    # systemd saw the reload start and end.
    reloading = notify.times("RELOADING", "1", since=t_hup)
    ready_again = notify.times("READY", "1", since=t_hup)
    assert reloading and ready_again and reloading[0] <= ready_again[0]


def test_sighup_with_an_invalid_config_keeps_the_old_one_and_says_why(make_suite, watcher, notify):
    extra = {
        "alarm_types": {"point.high": {"priority": "high", "kind": "technical", "ladder": "deterioration"}}
    }
    suite = make_suite({"env": points_device()}, extra)
    suite.start_sims()
    d = start_daemon_env(suite, watcher, notify.env(watchdog_s=3.0))
    notify.wait_for(lambda n: n.first("READY", "1"), 15, "READY=1")
    suite.sim("env", "set", temperature=25.0)
    good = copy.deepcopy(suite.data)

    bad = copy.deepcopy(good)
    bad["devices"]["env"]["poll_s"] = -1
    bad["devices"]["env"]["bogus"] = 1
    bad["ladders"]["deterioration"]["steps"][0]["timeout_s"] = -1
    suite.data = bad
    suite.write()
    os.kill(d.pid, signal.SIGHUP)
    ev = watcher.wait_for(event_of(watcher, suite.site, "config.reload_failed"), 10, what="reload_failed")
    paths = {e["path"] for e in ev["data"]["errors"]}
    assert paths == {"devices.env.poll_s", "devices.env.bogus", "ladders.deterioration.steps.0.timeout_s"}
    assert ev["data"]["kept"] == "previous configuration"

    # The old limit (28) and the old ladder still work: the alarm rises and escalates.
    suite.sim("env", "set", temperature=29.0)
    watcher.wait_for(
        event_of(watcher, suite.site, "alarm.notify", lambda e: e["alarm_id"] == "env.temperature.high"),
        10,
        what="escalation",
    )

    # Removing the ladder that alarm is escalating on is refused too, even though the file is valid.
    no_ladder = copy.deepcopy(good)
    del no_ladder["alarm_types"]
    del no_ladder["ladders"]
    suite.data = no_ladder
    suite.write()
    os.kill(d.pid, signal.SIGHUP)
    ev = watcher.wait_for(
        event_of(
            watcher,
            suite.site,
            "config.reload_failed",
            lambda e: e["data"]["errors"][0]["path"] == "ladders.deterioration",
        ),
        10,
        what="refused ladder removal",
    )
    assert "env.temperature.high" in ev["data"]["errors"][0]["message"]
    assert d.alive()
    assert not [e for e in watcher.events(suite.site) if e["type"] == "config.reloaded"]
    assert any("REFUSED" in s for s in notify.statuses())


def test_journal_backup_while_running_verifies(make_suite, watcher, tmp_path):
    """The backup recipe of docs/deployment.md: sqlite3 .backup / VACUUM INTO on the live journal."""
    suite = make_suite({"env": points_device(poll_s=0.05)})
    suite.start_sims()
    d = suite.start_daemon(watcher)
    suite.sim("env", "flap", low=20.0, high=30.0)  # the journal is being written during the backup
    watcher.wait_for(
        lambda w: len([e for e in w.events(suite.site) if e["type"] == "alarm.cleared"]) >= 5,
        10,
        what="events being written",
    )
    live = suite.tmp / "state" / "journal.sqlite3"
    copies = [tmp_path / "backup.sqlite3", tmp_path / "vacuum.sqlite3"]
    for cmd in (f".backup '{copies[0]}'", f"VACUUM INTO '{copies[1]}'"):
        r = subprocess.run(["sqlite3", str(live), cmd], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    assert d.alive()
    for copy_ in copies:
        r = subprocess.run(
            [
                *SUITEMON,
                "journal",
                "verify",
                "--journal",
                str(copy_),
                "--chain-key",
                str(suite.tmp / "state" / "journal-chain.key"),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert r.returncode == 0 and "hash chain intact" in r.stdout, r.stderr
        assert int(r.stdout.split("OK, ")[1].split()[0]) > 10
