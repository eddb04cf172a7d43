"""``suitemon shutdown``: the dry-run timeline (computed, and rehearsed against the simulators),
and manual actions that need --confirm."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO
from shutdown_helpers import AREAS, EXAMPLE, short_shutdown, shutdown_events, state_of, strip_none, ups_device


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suitemon.daemon.cli", "shutdown", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def test_dry_run_prints_the_timeline_of_the_example_suite():
    r = cli("-c", str(EXAMPLE), "--dry-run", "--offline")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "timeline: computed from configuration only (--offline" in out
    lines = out.splitlines()
    order = [next(i for i, line in enumerate(lines) if key in line) for key in (
        "trigger fires", "step 1 stop_acquisitions: scanner <- stop_new_acquisitions",
        "step 2 workstations_off", "point of no return: from here", "step 3 scanner_power_down",
        "step 4 ups_outlets: UPS 'ups' main outlet group shutdown-and-return, delay 60 s",
        "UPS turns the outlets off")]
    assert order == sorted(order)
    assert "t+50.0 s  point of no return" in out
    assert "HOLDS until acknowledged or released" in out
    assert "worst case from trigger to outlets off: 180 s" in out


def test_dry_run_without_simulators_says_it_computed_the_timeline():
    # The example's broker (127.0.0.1:1883) is normally not there; if some broker is, no target answers.
    r = cli("-c", str(EXAMPLE), "--dry-run", "--wait", "1")
    assert r.returncode == 0, r.stderr
    assert "timeline: computed from configuration only" in r.stdout
    assert "step 4 ups_outlets" in r.stdout


def test_dry_run_rehearses_with_the_simulated_targets_and_shuts_nothing_down(make_suite, watcher, tmp_path):
    sd = short_shutdown()
    sd["targets"]["scanner"]["sim"] = {"ack_delay_s": 0.2}
    sd["targets"]["workstations"]["sim"] = {"mode": "never"}
    suite = make_suite({"ups": ups_device("tcp", tmp_path)}, extra={"areas": AREAS, "shutdown": strip_none(sd)})
    suite.start_sims()  # the UPS and the shutdown_targets simulator
    suite.start_daemon(watcher)
    r = cli("-c", str(suite.path), "--dry-run", "--wait", "2")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "timeline: rehearsed live (targets rehearsed live over MQTT" in out
    assert "acknowledged in 0.2" in out
    assert "no answer to the rehearsal; worst case 1.5 s without acknowledgement, then proceeds" in out
    assert "UPS simulator now: mains, runtime 1200 s" in out
    got = suite.sim("shutdown_targets", "received", target="scanner")
    assert [(c["command"], c["rehearsal"]) for c in got] == [("stop_new_acquisitions", True)]
    assert got[0]["correlation_id"].startswith("rehearsal-")
    assert suite.sim("ups", "state")["outlet_commands"] == []
    assert state_of(watcher, suite)["phase"] == "idle"
    assert not shutdown_events(watcher, suite.site, "shutdown.reply.rejected")


def test_manual_start_from_the_cli_needs_confirm(make_suite, watcher, tmp_path):
    suite = make_suite({"ups": ups_device("tcp", tmp_path)},
                       extra={"areas": AREAS, "shutdown": strip_none(short_shutdown())})
    suite.start_sims("ups")
    suite.start_daemon(watcher)
    r = cli("-c", str(suite.path), "--start")
    assert r.returncode == 2 and "without --confirm" in r.stderr
    pw = tmp_path / "rad1.pw"
    pw.write_text("any: the test broker is open\n")
    pw.chmod(0o600)
    me = ("--user", "rad1", "--password-file", str(pw))
    assert cli("-c", str(suite.path), "--abort", "--confirm", *me).returncode == 1  # nothing running: refused
    r = cli("-c", str(suite.path), "--start", "--confirm", *me, "--reason", "drill")
    assert r.returncode == 0, r.stderr
    started = watcher.wait_for(lambda w: shutdown_events(w, suite.site, "shutdown.started"), 5)[0]
    assert started["actor"] == "rad1" and started["data"]["trigger"]["detail"] == "manual start by rad1: drill"
    r = cli("-c", str(suite.path), "--status", *me)
    assert r.returncode == 0 and '"phase": "running"' in r.stdout
    r = cli("-c", str(suite.path), "--abort", "--confirm", *me)
    assert r.returncode == 0, r.stderr
    watcher.wait_for(lambda w: shutdown_events(w, suite.site, "shutdown.resumed_all"), 10)
    assert state_of(watcher, suite)["abort_reason"] == "manual abort by rad1"
