"""The journal: append-only, hash-chained, verifiable; tampering with sqlite3 is detected."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import pytest
from helpers import REPO

from suitemon.daemon.journal import SCHEMA_VERSION, Journal


def fill(path, n=10) -> Journal:
    j = Journal(path)
    for i in range(n):
        j.append("test.event", {"i": i, "text": f"event {i}"}, alarm_id=f"a{i % 3}")
    j.commit()
    return j


def verify_cli(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", "journal", "verify", "--journal", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_chain_verifies_and_survives_reopen(tmp_path):
    p = tmp_path / "j.sqlite3"
    fill(p).close()
    j = Journal(p)
    j.append("test.more", {"x": 1})
    j.commit()
    r = j.verify()
    assert r.ok and r.rows == 11
    j.close()
    cli = verify_cli(p)
    assert cli.returncode == 0 and "hash chain intact" in cli.stdout


def test_rows_cannot_be_updated_or_deleted_through_sql(tmp_path):
    p = tmp_path / "j.sqlite3"
    fill(p).close()
    db = sqlite3.connect(p)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE events SET body = '{}' WHERE seq = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM events WHERE seq = 3")


@pytest.mark.skipif(not shutil.which("sqlite3"), reason="sqlite3 command-line tool not installed")
def test_edit_with_sqlite3_tool_is_detected(tmp_path):
    p = tmp_path / "j.sqlite3"
    fill(p).close()
    # A determined editor drops the trigger first; the chain still catches it.
    script = (
        "DROP TRIGGER events_no_update; "
        "UPDATE events SET body = replace(body, 'event 4', 'event 40') WHERE seq = 5;"
    )
    subprocess.run(["sqlite3", str(p), script], check=True)
    cli = verify_cli(p)
    assert cli.returncode == 1
    assert "seq 5" in cli.stderr and "does not match its hash" in cli.stderr


def test_deleted_row_is_detected(tmp_path):
    p = tmp_path / "j.sqlite3"
    fill(p).close()
    db = sqlite3.connect(p)
    db.execute("DROP TRIGGER events_no_delete")
    db.execute("DELETE FROM events WHERE seq = 4")
    db.commit()
    db.close()
    r = Journal(p).verify()
    assert not r.ok and r.first_bad_seq == 5 and "gap" in r.reason


def test_schema_version_is_recorded_and_newer_is_refused(tmp_path):
    p = tmp_path / "j.sqlite3"
    fill(p, 1).close()
    db = sqlite3.connect(p)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(Exception, match="newer"):
        Journal(p)


def test_latest_per_alarm_and_delivery_cursor(tmp_path):
    j = fill(tmp_path / "j.sqlite3", 9)
    latest = {e.alarm_id: e.data["i"] for e in j.latest_per_alarm()}
    assert latest == {"a0": 6, "a1": 7, "a2": 8}
    assert j.delivered_upto() == 0
    j.set_delivered(5)
    j.commit()
    j.set_delivered(3)  # never moves back
    j.commit()
    assert j.delivered_upto() == 5
    assert [e.seq for e in j.events_after(5, limit=100)] == [6, 7, 8, 9]
