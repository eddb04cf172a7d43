"""Logs: JSON lines when not on a terminal (systemd), library warnings in the same stream."""

from __future__ import annotations

import io
import json
import logging
import os
import re

import pytest
import structlog
from helpers import wait_until
from service_helpers import points_device, start_daemon_env

from suitemon.daemon import logs


@pytest.fixture(autouse=True)
def structlog_restored():
    """These tests point structlog (and the root logger) at streams they close: later tests in the
    same worker must not log into a closed file."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_when_not_a_terminal_and_stdlib_records_join_the_stream():
    buf = io.StringIO()
    logs.setup("info", "auto", stream=buf)
    structlog.get_logger("t").warning("device poll failed", device="ups", error='no "answer"')
    logging.getLogger("suitemon.paho").error('socket error "x"')
    logging.getLogger("suitemon.paho").info("chatter")  # below WARNING: dropped
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert (
        lines[0]["event"] == "device poll failed"
        and lines[0]["device"] == "ups"
        and lines[0]["level"] == "warning"
    )
    assert lines[0]["timestamp"].endswith("Z")
    assert lines[1]["event"] == 'socket error "x"' and lines[1]["logger"] == "suitemon.paho"
    assert len(lines) == 2


def test_every_record_names_its_logger():
    buf = io.StringIO()
    logs.setup("info", "json", stream=buf)
    structlog.get_logger("suitemon.mqtt").info("connected", host="127.0.0.1")
    structlog.get_logger().warning("unnamed")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines[0]["logger"] == "suitemon.mqtt" and lines[0]["event"] == "connected"
    assert lines[1]["logger"] == "suitemon"
    assert not buf.getvalue().startswith("<")  # not journald: no priority prefix


def test_journal_stream_of_another_file_gets_no_prefix(tmp_path, monkeypatch):
    # A child whose stderr was redirected inherits JOURNAL_STREAM: only the journal's own fd is prefixed.
    other = tmp_path / "other"
    other.write_text("")
    st = os.stat(other)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    with open(tmp_path / "mine", "w") as mine:
        logs.setup("info", "json", stream=mine)
        structlog.get_logger("suitemon.t").error("boom")
    line = (tmp_path / "mine").read_text()
    assert line.startswith("{") and json.loads(line)["level"] == "error"


def test_under_journald_each_line_carries_its_syslog_priority_and_logger(make_suite, watcher):
    """The daemon as systemd runs it: stderr is the journal stream named by JOURNAL_STREAM."""
    suite = make_suite({"env1": points_device(poll_s=0.2, timeout_s=0.2)})  # no simulator: polls fail
    logfile = suite.tmp / "journald.log"
    logfile.write_bytes(b"")
    st = os.stat(logfile)
    p = start_daemon_env(suite, watcher, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, name="journald")
    wait_until(lambda: b"device poll failed" in logfile.read_bytes(), 15, what="a poll failure logged")
    assert p.terminate() == 0
    raw = logfile.read_bytes()
    lines = [ln for ln in raw.split(b"\n") if ln]
    bad = [ln for ln in lines if not re.match(rb"^<[0-7]>\{", ln)]
    assert not bad, f"lines without a priority prefix: {bad[:5]}"
    records = [(int(ln[1:2]), json.loads(ln[3:])) for ln in lines]
    err = next((prio, r) for prio, r in records if r["event"] == "device poll failed")
    assert err[0] == 3 and err[1]["level"] == "error" and err[1]["logger"] == "suitemon.devices"
    info = next((prio, r) for prio, r in records if r["event"] == "suitemon running")
    assert info[0] == 6 and info[1]["logger"] == "suitemon.daemon"
    assert all(r.get("logger") for _, r in records)


def test_library_records_under_journald_get_their_priority_too(tmp_path, monkeypatch):
    path = tmp_path / "journal-stream"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logs.setup("info", "json", stream=stream)
        logging.getLogger("pynetdicom.assoc").error("association aborted")
        logging.getLogger("paho").warning("reconnecting")
        structlog.get_logger("suitemon.dicom").debug("below the level: dropped")
    lines = path.read_text().splitlines()
    assert [ln[:3] for ln in lines] == ["<3>", "<4>"]
    first = json.loads(lines[0][3:])
    assert first["logger"] == "pynetdicom.assoc" and first["level"] == "error"
