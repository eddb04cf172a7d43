"""Logs: JSON lines when not on a terminal (systemd), library warnings in the same stream."""

from __future__ import annotations

import io
import json
import logging

import structlog

from suitemon.daemon import logs


def test_json_when_not_a_terminal_and_stdlib_records_join_the_stream():
    buf = io.StringIO()
    logs.setup("info", "auto", stream=buf)
    structlog.get_logger("t").warning("device poll failed", device="ups", error='no "answer"')
    logging.getLogger("suitemon.paho").error('socket error "x"')
    logging.getLogger("suitemon.paho").info("chatter")  # below WARNING: dropped
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines[0]["event"] == "device poll failed" and lines[0]["device"] == "ups" and lines[0]["level"] == "warning"
    assert lines[0]["timestamp"].endswith("Z")
    assert lines[1]["event"] == 'socket error "x"' and lines[1]["logger"] == "suitemon.paho"
    assert len(lines) == 2
