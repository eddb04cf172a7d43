"""``suitemon board -c FILE``: serve the suite board (registered through kinds.CLI_EXTENSIONS)."""

from __future__ import annotations

import asyncio

import structlog

from suitemon.daemon import logs

log = structlog.get_logger("suitemon.board")


def cmd_board(args) -> int:
    from suitemon.daemon.cli import EXIT_OK, _install_signals, _load_or_exit
    cfg = _load_or_exit(args.config)  # every config error before any port opens
    logs.setup(cfg.logging.level, args.log_format or cfg.logging.format)
    if getattr(cfg, "board", None) is None:
        log.warning("no [board] section: defaults (127.0.0.1:8480, view only, no logins)")
    if args.port is not None:
        bcfg = cfg.board if cfg.board is not None else _default()
        cfg = cfg.model_copy(update={"board": bcfg.model_copy(update={"port": args.port})})
    from suitemon.daemon.board.server import run_board

    async def main():
        stopping = asyncio.Event()
        _install_signals(asyncio.get_running_loop(), stopping)
        await run_board(cfg, stopping)

    asyncio.run(main())
    return EXIT_OK


def _default():
    from suitemon.daemon.board.config import BoardConfig
    return BoardConfig()


def add_parser(sub) -> None:
    from suitemon.daemon.cli import add_config_option, add_log_format_option
    s = sub.add_parser("board", help="serve the suite board (live page for the nurse station)")
    add_config_option(s)
    s.add_argument("--port", type=int, default=None, help="listen on this port instead of board.port")
    add_log_format_option(s)
    s.set_defaults(fn=cmd_board)
