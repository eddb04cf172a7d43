"""Read-only CLI commands on a suite with no journal, or a file that is not one: a clear line on
stderr and exit 1, never a traceback (cli_support.open_journal_or_say_why)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO

EXAMPLE = REPO / "examples" / "suite.toml"
COMMANDS = (["bells", "report"], ["doses", "summary"])


def suite_in(tmp_path):
    text = EXAMPLE.read_text()
    assert '\n[state]\ndir = "/var/lib/suitemon"' in text
    cfg = tmp_path / "suite.toml"
    cfg.write_text(text.replace('\n[state]\ndir = "/var/lib/suitemon"', f'\n[state]\ndir = "{tmp_path}"'))
    return cfg


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_no_journal_is_said_with_its_path(tmp_path, command):
    r = run(*command, "-c", str(suite_in(tmp_path)))
    assert r.returncode == 1, r.stderr
    assert f"{tmp_path / 'journal.sqlite3'}: no journal here" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_file_that_is_no_journal_is_said_not_thrown(tmp_path, command):
    cfg = suite_in(tmp_path)
    (tmp_path / "journal.sqlite3").write_bytes(b"this is not an SQLite database\n" * 64)
    r = run(*command, "-c", str(cfg))
    assert r.returncode == 1, r.stderr
    assert f"{tmp_path / 'journal.sqlite3'}: cannot open journal:" in r.stderr
    assert "Traceback" not in r.stderr
