"""The shipped unit files: systemd-analyze verify, the security score, and agreement with the daemon."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from suitemon.daemon.app import STOP_HARD_LIMIT_S

UNITS = REPO / "systemd"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing: apt-get install systemd")
VENV_SUITEMON = Path(sys.executable).parent / "suitemon"
INSTALLED = "/opt/suitemon/venv/bin/suitemon"


def entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; systemd allows a key more than once."""
    out, section = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(path: Path, key: str) -> list[str]:
    return [v for _, k, v in entries(path) if k == key]


def local_copy(unit: str, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's suitemon: verify checks the binary exists."""
    text = (UNITS / unit).read_text()
    assert INSTALLED in text
    assert VENV_SUITEMON.exists(), f"{VENV_SUITEMON} missing: pip install -e . first"
    dst = tmp_path / unit
    dst.write_text(text.replace(INSTALLED, str(VENV_SUITEMON)))
    return dst


@needs_analyze
@pytest.mark.parametrize("unit", ["suitemon.service", "suitemon-sim.service", "suitemon-board.service"])
def test_systemd_analyze_verify_passes(unit, tmp_path):
    r = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(local_copy(unit, tmp_path))],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def exposure(unit_path: Path) -> float:
    r = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(unit_path)], capture_output=True, text=True
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert m, r.stdout[-1000:] + r.stderr
    return float(m.group(1))


@needs_analyze
def test_security_exposure_of_the_daemon_unit_is_at_most_2(tmp_path):
    score = exposure(local_copy("suitemon.service", tmp_path))
    assert score <= 2.0, f"exposure {score}"
    # The figure is recorded in docs/deployment.md; keep them in step.
    assert f"exposure level {score}" in (REPO / "docs" / "deployment.md").read_text()


def test_the_unit_matches_what_the_daemon_does():
    unit = UNITS / "suitemon.service"
    one = {k: vs[-1] for k in {k for _, k, _ in entries(unit)} if (vs := values(unit, k))}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the daemon reloads on SIGHUP
    assert one["Restart"] == "on-failure"  # covers a watchdog timeout
    watchdog_s = float(one["WatchdogSec"].rstrip("s"))
    assert watchdog_s >= 6  # pings every third of it, with room for a loaded machine
    # The daemon promises 5 s and bails out hard at STOP_HARD_LIMIT_S; systemd waits longer.
    assert float(one["TimeoutStopSec"].rstrip("s")) > STOP_HARD_LIMIT_S + 1
    assert one["RestartPreventExitStatus"] == "2"  # a config error does not loop
    assert one["CapabilityBoundingSet"] == "" and one["AmbientCapabilities"] == ""
    assert one["StateDirectory"] == "suitemon"  # = the default state.dir /var/lib/suitemon
    assert one["ConfigurationDirectory"] == "suitemon"
    assert one["SupplementaryGroups"] == "dialout"
    assert one["ProtectSystem"] == "strict" and one["NoNewPrivileges"] == "yes"
    assert values(unit, "SystemCallFilter")[0] == "@system-service"
    assert "-c /etc/suitemon/suite.toml" in one["ExecStart"]
    cred = values(unit, "LoadCredential")
    assert cred == ["mqtt-password:/etc/suitemon/mqtt-password"]


@needs_analyze
def test_security_exposure_of_the_board_unit_is_at_most_2(tmp_path):
    score = exposure(local_copy("suitemon-board.service", tmp_path))
    assert score <= 2.0, f"exposure {score}"
    assert f"board unit scores {score}" in (REPO / "docs" / "deployment.md").read_text()


def test_the_board_unit_runs_apart_from_the_daemon_and_stops_on_a_config_error():
    unit = UNITS / "suitemon-board.service"
    one = {k: vs[-1] for k in {k for _, k, _ in entries(unit)} if (vs := values(unit, k))}
    assert one["ExecStart"].split()[1:4] == ["board", "-c", "/etc/suitemon/suite.toml"]
    assert one["User"] != values(UNITS / "suitemon.service", "User")[-1]  # no access to the daemon's files
    assert one["RestartPreventExitStatus"] == "2"  # unsafe secret file or bad config: no restart loop
    assert values(unit, "LoadCredential") == ["board-password:/etc/suitemon/board-password"]
    assert "StateDirectory" not in one and one["ProtectSystem"] == "strict"  # writes nothing
    assert one["MemoryMax"] and one["CapabilityBoundingSet"] == ""
