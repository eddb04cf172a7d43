"""``suitemon shutdown``: the dry-run timeline (computed, and rehearsed against the simulators),
and manual actions that need --confirm."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO
from shutdown_helpers import (
    AREAS,
    EXAMPLE,
    short_shutdown,
    shutdown_events,
    state_of,
    strip_none,
    targets,
    ups_device,
)

__all__ = ["targets"]  # the fixture (pyflakes sees no use of it: ruff's autofix once removed the import)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", "shutdown", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def test_dry_run_prints_the_timeline_of_the_example_suite():
    r = cli("-c", str(EXAMPLE), "--dry-run", "--offline")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "timeline: computed from configuration only (--offline" in out
    lines = out.splitlines()
    # The PET-CT order: the console drives the scanner down, so it is never switched off before it.
    order = [
        next(i for i, line in enumerate(lines) if key in line)
        for key in (
            "trigger fires",
            "step 1 stop_acquisitions: scanner <- stop_new_acquisitions",
            "step 2 dispenser_safe: dispenser <- safe_state",
            "step 3 recon_and_pacs: recon <- finish_or_flush_then_stop",
            "step 4 workstations_off",
            "step 5 patient_on_couch: if a patient is in 'scanner'",
            "point of no return: from here",
            "step 6 scanner_power_down: scanner <- controlled_shutdown",
            "step 7 ups_outlets: UPS 'ups' shutdown-and-return of 3 outlet group(s)",
            "t+440.0 s  outlet group 'scanner_supply' (switched_group_0, delay 60 s) off: acquisition console",
            "t+470.0 s  outlet group 'hotlab_and_reporting' (switched_group_1, delay 90 s) off",
            "t+1280.0 s  outlet group 'supervision' (main_group, delay 900 s) off; patient supervision, switches off LAST",
        )
    ]
    assert order == sorted(order)
    assert "call-bell I/O module, area gamma monitors, suitemon PC, its network switch" in out
    assert "t+260.0 s  point of no return" in out
    assert "HOLDS until the room is free or a person releases it" in out
    assert "worst case from trigger to the suite's load off: 480 s" in out


def test_dry_run_without_simulators_says_it_computed_the_timeline():
    # The example's broker (127.0.0.1:1883) is normally not there; if some broker is, no target answers.
    r = cli("-c", str(EXAMPLE), "--dry-run", "--wait", "1")
    assert r.returncode == 0, r.stderr
    assert "timeline: computed from configuration only" in r.stdout
    assert "step 7 ups_outlets" in r.stdout


def test_dry_run_rehearses_with_the_simulated_targets_and_shuts_nothing_down(make_suite, watcher, tmp_path):
    sd = short_shutdown()
    sd["targets"]["scanner"]["sim"] = {"ack_delay_s": 0.2}
    sd["targets"]["workstations"]["sim"] = {"mode": "never"}
    suite = make_suite(
        {"ups": ups_device("tcp", tmp_path)}, extra={"areas": AREAS, "shutdown": strip_none(sd)}
    )
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


def test_manual_start_from_the_cli_needs_confirm(make_suite, watcher, tmp_path, targets):
    sd = short_shutdown()
    # CLI calls take ~3 s each on a loaded machine: the sequence must still be running at --abort
    # (the scanner does not answer its step; it answers the resume at once, so no wait is added).
    sd["steps"][0]["timeout_s"] = 30.0
    suite = make_suite(
        {"ups": ups_device("tcp", tmp_path)}, extra={"areas": AREAS, "shutdown": strip_none(sd)}
    )
    suite.start_sims("ups")
    suite.start_daemon(watcher)
    scanner = targets(suite, "scanner", mode="never")
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
    assert (
        started["actor"] == "rad1" and started["data"]["trigger"]["detail"] == "manual start by rad1: drill"
    )
    r = cli("-c", str(suite.path), "--status", *me)
    assert r.returncode == 0 and '"phase": "running"' in r.stdout
    scanner.set(mode="ack")
    r = cli("-c", str(suite.path), "--abort", "--confirm", *me)
    assert r.returncode == 0, r.stderr
    watcher.wait_for(lambda w: shutdown_events(w, suite.site, "shutdown.resumed_all"), 20)
    assert state_of(watcher, suite)["abort_reason"] == "manual abort by rad1"
