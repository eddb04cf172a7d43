"""Structured logs: JSON lines under systemd (or any non-terminal), readable in a terminal.

Every record names its logger (``structlog.get_logger("suitemon.mqtt")`` -> ``"logger":
"suitemon.mqtt"``). When the stream is connected to journald, each line starts with the
sd-daemon(3) priority prefix (``<3>`` error ... ``<7>`` debug), which systemd turns into the
journal's PRIORITY (SyslogLevelPrefix=yes is its default): ``journalctl -u suitemon -p err``
then shows suitemon's errors.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

# A structlog renderer: the last processor, which turns a record into its line (JSONRenderer's is
# bytes when given a bytes-returning dumps, such as orjson's).
Renderer = Callable[[WrappedLogger, str, EventDict], str | bytes]

# sd-daemon(3) / syslog(3) priorities.
PRIORITY = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "warn": 4, "info": 6, "debug": 7}
DEFAULT_LOGGER = "suitemon"


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that remembers the name it was asked for (plain PrintLogger drops it)."""

    def __init__(self, file: TextIO, name: str):
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    def __init__(self, file: TextIO):
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        name = args[0] if args and isinstance(args[0], str) else DEFAULT_LOGGER
        return _NamedPrintLogger(self._file, name)


def to_journald(stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd gave us.

    systemd sets JOURNAL_STREAM=<dev>:<inode> of the stdout/stderr it connected; a child
    whose output was redirected elsewhere inherits the variable, so the fd is compared
    (the check sd-daemon(3) and systemd.exec(5) recommend).
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False  # not a real file (StringIO in tests): not the journal
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


class _PriorityPrefix:
    """Wraps a renderer: every line of its output gets the record's ``<N>`` priority."""

    def __init__(self, render: Renderer):
        self.render = render

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        prio = PRIORITY.get(str(event_dict.get("level", method_name)).lower(), 6)
        rendered = self.render(logger, method_name, event_dict)
        text = rendered.decode() if isinstance(rendered, bytes) else rendered
        return "\n".join(f"<{prio}>{line}" for line in text.split("\n"))


def setup(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Renderer = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    if to_journald(stream):
        renderer = _PriorityPrefix(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=_NamedPrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (paho, pynetdicom) end up in the same stream,
    # at WARNING and above: their errors must be seen, their chatter not.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
