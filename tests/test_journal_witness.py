"""Issue 15 item 9: a journal that proves itself.

The probe: drop the triggers, edit (or delete) rows, recompute the chain with plain
SHA-256, or delete the newest rows. Each must be caught by ``journal verify``, the last
one by the witness (checkpoint file or the retained checkpoint on the broker).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess

from helpers import REPO, SUITEMON

from suitemon.daemon import checkpoints as cps
from suitemon.daemon.journal import CHAIN_KEYED, GENESIS, Journal, _row_hash

KEY = b"k" * 32


def keyed(path, n=10, key=KEY) -> Journal:
    j = Journal(path, chain_key=key)
    j.start_keyed_segment()
    for i in range(n):
        j.append("test.event", {"i": i, "text": f"event {i}"}, alarm_id=f"a{i % 3}")
    j.commit()
    return j


def recompute_plain(path, keyed_from_null: bool = False) -> None:
    """What an attacker without the key does after editing: rebuild every hash with SHA-256."""
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER IF EXISTS events_no_update")
    db.execute("DROP TRIGGER IF EXISTS events_no_delete")
    if keyed_from_null:
        db.execute("UPDATE chain SET keyed_from = NULL")
    rows = db.execute("SELECT seq, event_id, ts, type, alarm_id, body FROM events ORDER BY seq").fetchall()
    prev = GENESIS
    for new_seq, (seq, event_id, ts, type_, alarm_id, body) in enumerate(rows, start=1):
        h = _row_hash(prev, new_seq, event_id, ts, type_, alarm_id, body)
        db.execute(
            "UPDATE events SET seq = ?, prev_hash = ?, hash = ? WHERE seq = ?", (new_seq, prev, h, seq)
        )
        prev = h
    db.commit()
    db.close()


def tamper(path, sql: str) -> None:
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER IF EXISTS events_no_update")
    db.execute("DROP TRIGGER IF EXISTS events_no_delete")
    db.execute(sql)
    db.commit()
    db.close()


def verify_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SUITEMON, "journal", "verify", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_clean_keyed_journal_verifies(tmp_path):
    p = tmp_path / "j.sqlite3"
    keyed(p).close()
    r = Journal(p, chain_key=KEY).verify()
    assert r.ok and r.rows == 10 and r.keyed_from == 1 and r.head_seq == 10
    (tmp_path / "chain.key").write_bytes(KEY)
    cli = verify_cli("--journal", p, "--chain-key", tmp_path / "chain.key")
    assert cli.returncode == 0, cli.stderr
    assert "keyed from seq 1" in cli.stdout


def test_edit_and_recompute_is_detected(tmp_path):
    p = tmp_path / "j.sqlite3"
    keyed(p).close()
    tamper(p, "UPDATE events SET body = replace(body, 'event 4', 'event 40') WHERE seq = 5")
    recompute_plain(p)
    r = Journal(p, chain_key=KEY).verify()
    assert not r.ok and r.first_bad_seq == 1 and "keyed" in r.reason


def test_edit_and_recompute_as_a_plain_chain_is_detected(tmp_path):
    # The downgrade: clear keyed_from too, so the whole chain looks like an old plain one.
    p = tmp_path / "j.sqlite3"
    keyed(p).close()
    tamper(p, "UPDATE events SET body = replace(body, 'event 4', 'event 40') WHERE seq = 5")
    recompute_plain(p, keyed_from_null=True)
    r = Journal(p, chain_key=KEY).verify()
    assert not r.ok and "not keyed" in r.reason


def test_deleted_middle_rows_renumbered_and_recomputed_are_detected(tmp_path):
    p = tmp_path / "j.sqlite3"
    keyed(p).close()
    tamper(p, "DELETE FROM events WHERE seq IN (4, 5, 6)")
    recompute_plain(p)
    r = Journal(p, chain_key=KEY).verify()
    assert not r.ok and r.first_bad_seq is not None


def test_truncation_is_caught_by_the_checkpoint_file(tmp_path):
    p, cp_file, key_file = tmp_path / "j.sqlite3", tmp_path / "checkpoints.jsonl", tmp_path / "signing.key"
    (tmp_path / "chain.key").write_bytes(KEY)
    j = keyed(p)
    cpr = cps.Checkpointer(
        j,
        cps.load_or_create_signing_key(key_file),
        cp_file,
        "site1",
        committed=lambda: j.last_seq,
        publish=lambda cp: None,
    )
    cpr.take()
    j.close()
    pub = cps.public_key_path(key_file)
    clean = verify_cli(
        "--journal", p, "--chain-key", tmp_path / "chain.key", "--public-key", pub, "--witness", cp_file
    )
    assert clean.returncode == 0, clean.stderr
    assert "seq 10) matches" in clean.stdout

    tamper(p, "DELETE FROM events WHERE seq > 7")
    assert Journal(p, chain_key=KEY).verify().ok  # the chain alone cannot see it
    cli = verify_cli(
        "--journal", p, "--chain-key", tmp_path / "chain.key", "--public-key", pub, "--witness", cp_file
    )
    assert cli.returncode == 1
    assert "TRUNCATED" in cli.stderr and "seq 10" in cli.stderr and "ends at seq 7" in cli.stderr


def test_forged_checkpoint_is_not_believed(tmp_path):
    p, cp_file, key_file = tmp_path / "j.sqlite3", tmp_path / "checkpoints.jsonl", tmp_path / "signing.key"
    j = keyed(p)
    cp = cps.sign(cps.load_or_create_signing_key(key_file), "site1", *j.head(), j.keyed_from)
    j.close()
    # The attacker truncates and rewrites the file with a checkpoint of the shorter head, unsigned by the key.
    forged = {**cp, "seq": 7}
    cp_file.write_text(json.dumps(forged) + "\n")
    (tmp_path / "chain.key").write_bytes(KEY)
    cli = verify_cli(
        "--journal",
        p,
        "--chain-key",
        tmp_path / "chain.key",
        "--public-key",
        cps.public_key_path(key_file),
        "--witness",
        cp_file,
    )
    assert cli.returncode == 1 and "bad signature" in cli.stderr


def test_plain_journal_migrates_to_a_keyed_segment(tmp_path):
    p = tmp_path / "j.sqlite3"
    old = Journal(p)  # written by a suitemon without a chain key
    for i in range(5):
        old.append("test.event", {"i": i})
    old.commit()
    old.close()
    j = Journal(p, chain_key=KEY)
    plain_head = j.start_keyed_segment()
    assert plain_head is not None and plain_head[0] == 5
    marker = j.events_after(5, 1)[0]
    assert marker.type == CHAIN_KEYED and marker.data["previous_head"] == {"seq": 5, "hash": plain_head[1]}
    j.append("test.after", {})
    j.commit()
    assert j.verify().ok and j.keyed_from == 6
    j.close()
    # An edit in the old plain segment, recomputed up to the marker, breaks the keyed marker's link.
    tamper(p, "UPDATE events SET body = replace(body, '\"i\":2', '\"i\":20') WHERE seq = 3")
    db = sqlite3.connect(p)
    prev = GENESIS
    for seq, event_id, ts, type_, alarm_id, body in db.execute(
        "SELECT seq, event_id, ts, type, alarm_id, body FROM events WHERE seq <= 5 ORDER BY seq"
    ).fetchall():
        h = _row_hash(prev, seq, event_id, ts, type_, alarm_id, body)
        db.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, seq))
        prev = h
    db.commit()
    db.close()
    r = Journal(p, chain_key=KEY).verify()
    assert not r.ok and r.first_bad_seq == 6


def test_keyed_journal_refuses_appends_without_the_key(tmp_path):
    import pytest

    from suitemon.daemon.journal import JournalError

    p = tmp_path / "j.sqlite3"
    keyed(p, 2).close()
    j = Journal(p)
    with pytest.raises(JournalError, match="keyed"):
        j.append("test.event", {})
    assert not j.verify().ok  # cannot vouch for keyed rows without the key
    j.close()


def test_daemon_publishes_checkpoints_and_mqtt_witness_catches_truncation(make_suite, watcher):
    suite = make_suite()
    d = suite.start_daemon(watcher)
    topic = suite.topic("journal", "checkpoint")
    watcher.wait_for(lambda w: w.json_of(topic), 10, what="retained checkpoint")
    assert d.terminate() == 0
    state = suite.tmp / "state"
    # The final checkpoint at stop vouches for the daemon.stopped event.
    last = cps.read_file(state / "journal-checkpoints.jsonl")[-1]
    j = Journal(state / "journal.sqlite3", chain_key=(state / "journal-chain.key").read_bytes())
    assert last["seq"] == j.last_seq and j.events_after(last["seq"] - 1, 1)[0].type == "daemon.stopped"
    j.close()
    clean = verify_cli("-c", suite.path, "--witness", "mqtt")
    assert clean.returncode == 0, clean.stderr + clean.stdout
    assert "matches" in clean.stdout

    tamper(state / "journal.sqlite3", "DELETE FROM events WHERE seq = (SELECT MAX(seq) FROM events)")
    cli = verify_cli("-c", suite.path, "--witness", "mqtt")
    assert cli.returncode == 1 and "TRUNCATED" in cli.stderr, cli.stderr
    cli = verify_cli("-c", suite.path, "--witness", state / "journal-checkpoints.jsonl")
    assert cli.returncode == 1 and "TRUNCATED" in cli.stderr, cli.stderr


def test_signature_covers_every_field():
    key = cps.Ed25519PrivateKey.generate()
    cp = cps.sign(key, "s", 3, hashlib.sha256(b"x").hexdigest(), 1)
    assert cps.signature_ok(key.public_key(), cp)
    for field, value in (("seq", 4), ("hash", "0" * 64), ("keyed_from", None), ("site", "t"), ("ts", "x")):
        assert not cps.signature_ok(key.public_key(), {**cp, field: value})


def test_a_checkpoint_file_that_cannot_be_written_does_not_stop_the_broker_copy(tmp_path):
    j = keyed(tmp_path / "j.sqlite3", 3)
    (tmp_path / "blocked").mkdir()  # a directory where the file should be: every write fails
    sent = []
    cpr = cps.Checkpointer(
        j,
        cps.Ed25519PrivateKey.generate(),
        tmp_path / "blocked",
        "site1",
        committed=lambda: j.last_seq,
        publish=sent.append,
    )
    cp = cpr.take()
    assert sent == [cp] and cp["seq"] == 3 and cpr.write_failures == 1
    j.close()
