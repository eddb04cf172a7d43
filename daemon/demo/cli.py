"""``suitemon demo``: the whole suite on 127.0.0.1 (a row of the feature table, daemon/kinds.py)."""

from __future__ import annotations

import argparse

from suitemon.daemon.cli_support import add_config_option


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError("must be above 0 and at most 100")
    return value


def cmd_demo(args) -> int:
    from suitemon.daemon.demo.run import run_demo  # imported when run: `suitemon --help` stays quick

    return run_demo(args)


def add_parser(subparsers) -> None:
    s = subparsers.add_parser("demo", help="broker, simulators, daemon, board, live view on 127.0.0.1")
    add_config_option(s, default=None, help="config (default: the shipped examples/suite.toml, made local)")
    s.add_argument("--duration", type=float, default=None, metavar="S", help="exit cleanly after S seconds")
    s.add_argument(
        "--mqtt-port",
        type=int,
        default=None,
        metavar="PORT",
        help="port of the private broker (default: a free one)",
    )
    s.add_argument(
        "--scenario",
        default=None,
        help="play this scripted scenario (docs/scenarios.md) instead of the guided tour",
    )
    s.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="play the tour or scenario N times faster, with the site's timers N times shorter",
    )
    s.add_argument("--no-tour", action="store_true", help="start the suite without playing the guided tour")
    s.add_argument("--no-board", action="store_true", help="do not serve the suite board")
    s.add_argument("--no-view", action="store_true", help="no live view (logs only)")
    s.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the state (journal, spool) in DIR and write the "
        "localised config to DIR/suite.toml (for suitemon report)",
    )
    s.set_defaults(fn=cmd_demo)
