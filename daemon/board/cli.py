"""``suitemon board -c FILE``: serve the suite board (its `cli` in the feature table, daemon/kinds.py)."""

from __future__ import annotations

import asyncio
import sys

import structlog

from suitemon.daemon import logs

log = structlog.get_logger("suitemon.board")


def cmd_board(args) -> int:
    from suitemon.daemon.cli_support import EXIT_CONFIG, EXIT_OK, install_signals, load_or_exit

    cfg = load_or_exit(args.config)  # every config error before any port opens
    issues = board_secret_issues(cfg)
    if issues:  # the rule `suitemon run` applies, to the files the board itself reads
        print(
            f"{args.config}: refusing to serve the board ({len(issues)} unsafe secret file"
            f"{'s' if len(issues) != 1 else ''}):",
            file=sys.stderr,
        )
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_CONFIG
    logs.setup(cfg.logging.level, args.log_format or cfg.logging.format)
    if getattr(cfg, "board", None) is None:
        log.warning("no [board] section: defaults (127.0.0.1:8480, view only, no logins)")
    if args.port is not None:
        bcfg = cfg.board if cfg.board is not None else _default()
        cfg = cfg.model_copy(update={"board": bcfg.model_copy(update={"port": args.port})})
    from suitemon.daemon.board.server import run_board

    async def main():
        stopping = asyncio.Event()
        install_signals(asyncio.get_running_loop(), stopping)
        await run_board(cfg, stopping)

    asyncio.run(main())
    return EXIT_OK


def board_secret_issues(cfg) -> list:
    """Problems with the secret files the board reads: its observer password and the MQTT TLS key.

    Not the daemon's own password file: the board may run as another user that cannot read it."""
    from suitemon.daemon.config import ConfigIssue
    from suitemon.daemon.secret_files import check_secret_file, secret_paths

    issues = []
    bcfg = getattr(cfg, "board", None)
    if bcfg is not None and bcfg.observer_password_file is not None and not bcfg.observer_username:
        issues.append(
            ConfigIssue(
                "board.observer_username", "observer_password_file is set but observer_username is not"
            )
        )
    found = list(secret_paths(bcfg, "board")) if bcfg is not None else []
    if cfg.mqtt.tls is not None:
        found += secret_paths(cfg.mqtt.tls, "mqtt.tls")
    for key, path in found:
        issues += check_secret_file(key, path)
    return issues


def _default():
    from suitemon.daemon.board.config import BoardConfig

    return BoardConfig()


def add_parser(sub) -> None:
    from suitemon.daemon.cli_support import add_config_option, add_log_format_option

    s = sub.add_parser("board", help="serve the suite board (live page for the nurse station)")
    add_config_option(s)
    s.add_argument("--port", type=int, default=None, help="listen on this port instead of board.port")
    add_log_format_option(s)
    s.set_defaults(fn=cmd_board)
