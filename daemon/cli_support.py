"""What every sub-command shares, the main CLI's and the features' alike: exit codes, the
``-c/--config`` option, loading a config or exiting with its issues, stop signals.

Feature CLIs import this, never the main CLI's module (which loads every feature's parser).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from suitemon.daemon.config import ConfigError, SuiteConfig, load_config

if TYPE_CHECKING:
    from suitemon.daemon.journal import Journal

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2

DEFAULT_CONFIG = "/etc/suitemon/suite.toml"
LOG_FORMATS = ["auto", "json", "console"]


def load_or_exit(path: str, *, secrets: bool = False) -> SuiteConfig:
    """The validated config, or every issue on stderr and exit EXIT_CONFIG."""
    try:
        cfg = load_config(path)
        if secrets:  # the files the daemon itself will read: a config error too
            from suitemon.daemon.secret_files import secret_file_issues

            issues = secret_file_issues(cfg)
            if issues:
                raise ConfigError(issues, path)
        return cfg
    except ConfigError as err:
        print(
            f"{path}: invalid configuration ({len(err.issues)} error{'s' if len(err.issues) != 1 else ''}):",
            file=sys.stderr,
        )
        for issue in err.issues:
            print(f"  {issue}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


def install_signals(
    loop: asyncio.AbstractEventLoop, stopping: asyncio.Event, on_hup: Callable[[], object] | None = None
) -> None:
    """SIGTERM/SIGINT set ``stopping``; SIGHUP calls ``on_hup`` when given."""
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    if on_hup is not None:
        loop.add_signal_handler(signal.SIGHUP, on_hup)


def add_config_option(
    # A parser or a group of one (journal: -c or --journal): their common base in argparse.
    p: argparse._ActionsContainer,
    *,
    default: str | None = DEFAULT_CONFIG,
    help: str | None = None,
) -> None:
    """``-c/--config`` with one default and one help text for every sub-command (features too)."""
    p.add_argument(
        "-c",
        "--config",
        default=default,
        metavar="FILE",
        help=help or f"suite config (default: {DEFAULT_CONFIG})",
    )


def add_log_format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="log rendering; default: [logging] format (auto: console on a terminal, else JSON)",
    )


def open_journal_or_say_why(path: Path, *, chain_key: bytes | None = None) -> Journal | None:
    """The journal for a read-only CLI command, or None after saying on stderr why there is none
    (the caller exits EXIT_FAIL). Any failure to open is the operator's to read, not a traceback."""
    from suitemon.daemon.journal import Journal

    if not path.exists():
        print(f"{path}: no journal here (has the daemon run with this config?)", file=sys.stderr)
        return None
    try:
        return Journal(path, chain_key=chain_key)
    except Exception as err:  # a CLI edge: a corrupt or foreign file is reported, never a traceback
        print(f"{path}: cannot open journal: {err}", file=sys.stderr)
        return None
