"""The chain verified in segments (issue 17) finds exactly what one walk finds, wherever the damage is."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from concurrent.futures import ProcessPoolExecutor

import pytest

from suitemon.daemon import journal_segments
from suitemon.daemon.journal import Journal, _canonical, _row_text
from suitemon.daemon.journal_segments import verify_segments

KEY = b"segment-test-key-0123456789abcdef"
SEG = 10  # rows 1-10, 11-20, 21-30, ... are the segments


def journal(path, plain: int = 5, keyed: int = 40) -> None:
    """Plain rows first, then the keyed segment (its chain_keyed marker is row plain + 1)."""
    j = Journal(path)
    for i in range(plain):
        j.append("test.plain", {"i": i})
    j.commit()
    j.close()
    j = Journal(path, chain_key=KEY)
    j.start_keyed_segment()
    for i in range(keyed):
        j.append("alarm.raised", {"i": i, "text": f"événement {i} \"quoted\" \u2028"}, alarm_id=f"a{i % 3}")
    j.commit()
    j.close()


def single_walk(path, key=KEY):
    j = Journal(path, chain_key=key)
    try:
        return j.verify()
    finally:
        j.close()


def tamper(path, seq: int, how: str) -> None:
    db = sqlite3.connect(path)
    db.executescript("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
    if how == "body":
        db.execute("UPDATE events SET body = body || ' ' WHERE seq = ?", (seq,))
    elif how == "prev_hash":
        db.execute("UPDATE events SET prev_hash = ? WHERE seq = ?", ("f" * 64, seq))
    elif how == "hash":
        db.execute("UPDATE events SET hash = ? WHERE seq = ?", ("e" * 64, seq))
    elif how == "delete":
        db.execute("DELETE FROM events WHERE seq = ?", (seq,))
    elif how == "blob":
        db.execute("UPDATE events SET body = CAST(body AS BLOB) WHERE seq = ?", (seq,))
    db.commit()
    db.close()


@pytest.fixture
def pool():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as p:
        yield p


def test_row_text_is_the_canonical_json_text():
    odd = ["", "plain", 'a "quote" and \\ back', "tab\tnl\ncr\r\x00\x1f\x7f", "é ü ß 漢字 😀", "\u2028\u2029"]
    for s in odd:
        for alarm_id in (None, s):
            row = (
                "0" * 64,
                12,
                s,
                "2026-11-02T07:00:00.000000Z",
                "alarm." + s,
                alarm_id,
                json.dumps({"s": s}),
            )
            assert _row_text(*row) == _canonical(list(row)).encode("utf-8")


def test_an_intact_chain_gives_the_same_result_in_segments(tmp_path, pool):
    p = tmp_path / "j.sqlite3"
    journal(p)
    one = single_walk(p)
    assert one.ok and one.rows == 46 and one.keyed_from == 6
    assert verify_segments(p, KEY, pool, segment_rows=SEG) == one
    assert verify_segments(p, KEY, pool, segment_rows=7) == one
    assert verify_segments(p, KEY, None, segment_rows=1) == one


@pytest.mark.parametrize(
    "seq, how",
    [
        (15, "body"),  # the middle of a segment
        (15, "hash"),
        (15, "blob"),
        (20, "body"),  # the last row of a segment
        (20, "hash"),
        (20, "delete"),
        (21, "body"),  # the first row of a segment
        (21, "prev_hash"),
        (21, "delete"),
        (1, "delete"),  # the genesis
        (1, "prev_hash"),
        (6, "body"),  # the chain_keyed marker
        (46, "body"),  # the head
    ],
)
def test_a_tampered_row_is_found_exactly_as_by_one_walk(tmp_path, pool, seq, how):
    p = tmp_path / "j.sqlite3"
    journal(p)
    tamper(p, seq, how)
    one = single_walk(p)
    expected_bad = seq + 1 if how == "delete" else seq
    assert not one.ok and one.first_bad_seq == expected_bad
    assert verify_segments(p, KEY, pool, segment_rows=SEG) == one


def test_a_keyed_journal_without_the_key_and_a_downgrade_fail_the_same(tmp_path, pool):
    p = tmp_path / "j.sqlite3"
    journal(p)
    assert verify_segments(p, None, pool, segment_rows=SEG) == single_walk(p, None)
    assert not single_walk(p, None).ok
    db = sqlite3.connect(p)
    db.execute("UPDATE chain SET keyed_from = NULL")
    db.commit()
    db.close()
    assert verify_segments(p, KEY, pool, segment_rows=SEG) == single_walk(p) and not single_walk(p).ok


def test_the_report_finds_a_row_tampered_inside_a_segment(tmp_path, monkeypatch):
    from report_journal import KEY as REPORT_KEY
    from report_journal import SuiteWriter, example_config

    from suitemon.daemon.report.build import build_report
    from suitemon.daemon.report.period import parse_period

    cfg = example_config(tmp_path / "state")
    w = SuiteWriter(cfg)
    room = next(iter(cfg.devices["bells"].rooms))
    t = 1_794_470_400.0 + 9 * 3600  # 2026-11-12 09:00 UTC
    for i in range(10):
        w.bell_test_pass(t + i * 60, room)
    w.close()
    path = cfg.state.dir / "journal.sqlite3"
    monkeypatch.setattr(journal_segments, "SEGMENT_ROWS", SEG)
    period = parse_period("2026-11-12", "2026-11-12", cfg.site.timezone)
    clean = build_report(cfg, period, journal_path=path, chain_key=REPORT_KEY)
    assert clean.verification.ok and clean.verification.rows > 2 * SEG
    tamper(path, 15, "body")
    damaged = build_report(cfg, period, journal_path=path, chain_key=REPORT_KEY)
    assert not damaged.verification.ok
    assert "FAILED at seq 15: row content does not match its hash" in damaged.verification.detail
