"""The ``suitemon`` command. Sub-commands are a public contract (README, CHANGELOG)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from suitemon.daemon import __version__, logs
from suitemon.daemon.cli_support import (
    DEFAULT_CONFIG,
    EXIT_CONFIG,
    EXIT_FAIL,
    EXIT_OK,
    add_config_option,
    add_log_format_option,
    install_signals,
    load_or_exit,
)

if TYPE_CHECKING:
    from suitemon.daemon.config import SuiteConfig
    from suitemon.daemon.journal import Journal

log = structlog.get_logger("suitemon.cli")


def cmd_check_config(args: argparse.Namespace) -> int:
    path = _config_path(args)
    cfg = load_or_exit(path)
    print(f"{path}: valid")
    print(f"  site       {cfg.site.id} ({cfg.site.name})")
    print(
        f"  mqtt       {cfg.mqtt.host}:{cfg.mqtt.port} MQTT {cfg.mqtt.protocol}, topics {cfg.mqtt.base_topic}/{cfg.site.id}/..."
    )
    print(f"  state      {cfg.state.dir}")
    areas = ", ".join(f"{a}" for a in cfg.areas)
    print(f"  areas      {len(cfg.areas)}: {areas}")
    print(f"  devices    {len(cfg.devices)}")
    for did, d in cfg.devices.items():
        tr = getattr(d, "transport", None) or ("serial" if getattr(d, "serial_port", None) else "")
        # Each kind has its own wire fields (DeviceConfig has none): read those it has.
        where = (
            getattr(d, "serial_port", None)
            if tr in ("rtu", "serial")
            else (f"{getattr(d, 'host', '')}:{getattr(d, 'port', '')}" if hasattr(d, "host") else "")
        )
        print(
            f"    {did:<16} {d.kind:<20} {tr:<6} {where or '':<26} every {d.poll_s:g} s"
            f"{'' if d.enabled else '  (disabled)'}"
        )
    _print_ups_kinds(cfg)
    print(
        f"  ladders    {', '.join(f'{k} ({len(v.steps)} steps)' for k, v in cfg.ladders.items()) or 'none'}"
    )
    print(f"  protocols  {', '.join(cfg.protocols) or 'none'}")
    extra = [
        name
        for name in ("shutdown", "dicom", "dispensing", "radiation", "bells", "board", "metrics")
        if getattr(cfg, name, None) is not None
    ]
    if extra:
        print(f"  features   {', '.join(extra)}")
    dispensing = getattr(cfg, "dispensing", None)
    if dispensing is not None and dispensing.exams:
        # Which reference-level rule each exam is checked against: a person must be able to see it.
        print("  exams      reference level per booked exam")
        for code, exam in dispensing.exams.items():
            rule = exam.reference_level.describe() if exam.reference_level else "none (check not done)"
            print(f"    {code:<16} {exam.radiopharmaceutical or exam.radionuclide:<12} {rule}")
    _print_access(cfg)
    return EXIT_OK


UPS_KIND_LABELS = {"ups_apc": "APC Modbus", "ups_nut": "Network UPS Tools (upsd)", "ups_snmp": "SNMP UPS-MIB"}


def _print_ups_kinds(cfg: SuiteConfig) -> None:
    """Every UPS kind this daemon can watch, and which the config uses: the same rules for each."""
    from suitemon.daemon import kinds

    known = [k for k in kinds.KINDS if kinds.is_ups_kind(k)]
    used = {d.kind for d in cfg.devices.values() if kinds.is_ups_kind(d.kind)}
    print(
        "  ups kinds  "
        + ", ".join(f"{k} ({UPS_KIND_LABELS.get(k, k)}){' *' if k in used else ''}" for k in known)
        + ("   (* in use)" if used else "")
    )


def _print_access(cfg: SuiteConfig) -> None:
    """Who may send which command (docs/broker.md): the table the daemon decides by."""
    from suitemon.daemon.access import table

    rows = table(cfg)
    print(f"  commands   {len(rows)} user(s) hold a role; any other account may send nothing (default deny)")
    width = max((len(u) for u, _, _ in rows), default=4)
    for user, roles, verbs in rows:
        print(f"    {user:<{width}}  roles: {roles}")
        print(f"    {'':<{width}}  may:   {verbs}")


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_or_exit(args.config, secrets=True)  # before anything opens a port
    logs.setup(cfg.logging.level, args.log_format or cfg.logging.format)
    from suitemon.daemon.app import Daemon

    async def main() -> None:
        daemon = Daemon(cfg)
        loop = asyncio.get_running_loop()
        install_signals(
            loop,
            daemon.stopping,
            getattr(daemon, "reload", None)
            and (lambda: daemon.tasks.spawn(daemon.reload(args.config), name="reload")),
        )
        await daemon.run_until_stopped()
        # The stop is complete (journal closed, offline said). Leave now: asyncio.run's teardown
        # would wait on any library thread or stray task, and a daemon that has finished stopping
        # must not hang in it until the exit guard or systemd's SIGKILL.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)

    asyncio.run(main())
    return EXIT_OK


def cmd_journal(args: argparse.Namespace) -> int:
    from suitemon.daemon.journal import Journal, JournalError

    cfg: SuiteConfig | None = None
    chain_key_file = Path(args.chain_key) if args.chain_key else None
    public_key_file = Path(args.public_key) if args.public_key else None
    if args.journal:
        path = Path(args.journal)
        # The daemon's default place for the key, next to the journal (config: journal.chain_key_file).
        if chain_key_file is None and (path.parent / "journal-chain.key").exists():
            chain_key_file = path.parent / "journal-chain.key"
    else:
        cfg = load_or_exit(args.config)
        path = cfg.state.dir / "journal.sqlite3"
        cfg_chain, cfg_signing, _ = cfg.journal.paths(cfg.state.dir)
        chain_key_file = chain_key_file or cfg_chain
        public_key_file = public_key_file or cfg_signing
    if not path.exists():
        print(f"{path}: no journal here", file=sys.stderr)
        return EXIT_FAIL
    chain_key = None
    if args.action == "verify" and chain_key_file is not None:
        try:
            chain_key = chain_key_file.read_bytes()
        except OSError as err:
            print(f"{chain_key_file}: cannot read the chain key: {err.strerror}", file=sys.stderr)
            return EXIT_FAIL
    try:
        j = Journal(path, chain_key=chain_key)
    except (JournalError, Exception) as err:
        print(f"{path}: cannot open journal: {err}", file=sys.stderr)
        return EXIT_FAIL
    try:
        if args.action == "verify":
            return _verify(j, path, args, cfg, public_key_file)
        if args.action == "tail":
            start = max(0, j.last_seq - args.n)
            for ev in j.events_after(start, limit=args.n):
                print(json.dumps(ev.envelope("-"), ensure_ascii=False))
            return EXIT_OK
    finally:
        j.close()
    return EXIT_FAIL


def _verify(
    j: Journal, path: Path, args: argparse.Namespace, cfg: SuiteConfig | None, public_key_file: Path | None
) -> int:
    r = j.verify()
    if not r.ok:
        print(f"{path}: TAMPERED or damaged at seq {r.first_bad_seq}: {r.reason}", file=sys.stderr)
        return EXIT_FAIL
    keyed = f"keyed from seq {r.keyed_from}" if r.keyed_from is not None else "plain SHA-256 (not keyed)"
    print(f"{path}: OK, {r.rows} events, hash chain intact, {keyed}")
    if not args.witness:
        print("  no witness given: truncation (deleting the newest rows) is not checked; use --witness")
        return EXIT_OK
    from suitemon.daemon import checkpoints as cps

    if public_key_file is None:
        print("--witness needs the checkpoint public key: --public-key FILE (or -c CONFIG)", file=sys.stderr)
        return EXIT_FAIL
    try:
        pub = cps.load_public_key(public_key_file)
        if args.witness == "mqtt":
            if cfg is None:
                print("--witness mqtt needs -c CONFIG (broker and site)", file=sys.stderr)
                return EXIT_FAIL
            from suitemon.daemon.contract import Topics
            from suitemon.daemon.witness import fetch_retained

            candidates = fetch_retained(cfg.mqtt, Topics(cfg.mqtt.base_topic, cfg.site.id).checkpoint)
        else:
            candidates = cps.read_file(Path(args.witness))
    except (OSError, ValueError) as err:
        print(f"witness {args.witness}: cannot read it: {err}", file=sys.stderr)
        return EXIT_FAIL
    w = cps.choose(candidates, pub, cfg.site.id if cfg is not None else None)
    if w.invalid:
        print(
            f"witness {args.witness}: {w.invalid} checkpoint(s) with a bad signature or another site "
            "(forged or damaged)",
            file=sys.stderr,
        )
    if w.newest is None:
        print(f"witness {args.witness}: no valid checkpoint", file=sys.stderr)
        return EXIT_FAIL
    problem = cps.compare(r, w.newest, j)
    if problem:
        print(f"{path}: {problem}", file=sys.stderr)
        return EXIT_FAIL
    print(f"  witness {args.witness}: checkpoint of {w.newest['ts']} (seq {w.newest['seq']}) matches")
    return EXIT_FAIL if w.invalid else EXIT_OK


def cmd_sim(args: argparse.Namespace) -> int:
    cfg = load_or_exit(args.config)
    logs.setup(cfg.logging.level, args.log_format or cfg.logging.format)
    from suitemon.simulators.host import SimHost

    async def main() -> None:
        host = SimHost(cfg, only=set(args.device) if args.device else None, pace=args.pace)
        stopping = asyncio.Event()
        install_signals(asyncio.get_running_loop(), stopping)
        await host.start()
        print(
            f"simulating {', '.join(host.sims) or 'nothing'}; control on "
            f"{cfg.simulation.control_host}:{cfg.simulation.control_port}",
            flush=True,
        )
        try:
            await stopping.wait()
        finally:
            await host.stop()

    asyncio.run(main())
    return EXIT_OK


def cmd_sim_ctl(args: argparse.Namespace) -> int:
    cfg = load_or_exit(args.config)
    from suitemon.simulators.base import SimError
    from suitemon.simulators.host import send_control

    kv: dict[str, Any] = {}
    for item in args.args:
        k, _, v = item.partition("=")
        try:
            kv[k] = json.loads(v)
        except json.JSONDecodeError:
            kv[k] = v
    try:
        result = asyncio.run(
            send_control(
                cfg.simulation.control_host, cfg.simulation.control_port, args.device, args.action, kv
            )
        )
    except (SimError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAIL
    print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


def _config_path(args: argparse.Namespace) -> str:
    """check-config: ``-c FILE`` or the positional FILE (kept as an alias); not both, unless equal."""
    if args.file and args.config not in (None, args.file):
        print(
            f"check-config: two configs given ({args.file} and -c {args.config}); give one", file=sys.stderr
        )
        sys.exit(EXIT_CONFIG)
    return args.file or args.config or DEFAULT_CONFIG


class _OneLineCommands(argparse.HelpFormatter):
    """Lists each sub-command on one line with its help.

    argparse measures sub-command names one indent short, so a long name (check-config)
    would push its help onto the next line; widen the column by that indent.
    """

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.choices:
            longest = max(len(name) for name in action.choices)
            self._action_max_length = max(self._action_max_length, self._current_indent + 2 + longest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="suitemon",
        description="PET-CT suite safety monitor",
        formatter_class=_OneLineCommands,
        epilog=f"Every command that reads a config takes -c FILE (default {DEFAULT_CONFIG}). "
        "'suitemon COMMAND --help' tells more.",
    )
    p.add_argument(
        "--version", action="version", version=f"suitemon {__version__}", help="print the version and exit"
    )
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    s = sub.add_parser("run", help="run the daemon (what systemd starts)")
    add_config_option(s)
    add_log_format_option(s)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("check-config", help="validate a config; exit 2 listing every error")
    add_config_option(s, default=None)
    s.add_argument(
        "file",
        nargs="?",
        default=None,
        metavar="FILE",
        help=f"the config to check (same as -c; default: {DEFAULT_CONFIG})",
    )
    s.set_defaults(fn=cmd_check_config)

    s = sub.add_parser("journal", help="verify the journal's hash chain, or print its tail")
    s.add_argument(
        "action",
        choices=["verify", "tail"],
        help="verify: check every event's hash chain; tail: print the last events as JSON",
    )
    g = s.add_mutually_exclusive_group()
    add_config_option(g, help=f"find the journal in this config's state dir (default: {DEFAULT_CONFIG})")
    g.add_argument("--journal", metavar="PATH", help="path to journal.sqlite3 (instead of -c)")
    s.add_argument("-n", type=int, default=20, help="tail: how many events (default 20)")
    s.add_argument("--chain-key", help="the chain's HMAC key file (default with -c: from the config)")
    s.add_argument(
        "--public-key",
        help="checkpoint public key (PEM) for --witness (default with -c: the configured signing key)",
    )
    s.add_argument(
        "--witness", help="FILE of checkpoints, or 'mqtt' for the retained checkpoint on the broker"
    )
    s.set_defaults(fn=cmd_journal)

    s = sub.add_parser("sim", help="run simulators for the devices in a config")
    add_config_option(s)
    s.add_argument("--device", action="append", help="only this device (repeatable)")
    s.add_argument("--pace", action="store_true", default=None, help="pace RTU bytes at the line rate")
    add_log_format_option(s)
    s.set_defaults(fn=cmd_sim)

    s = sub.add_parser("sim-ctl", help="send an action to a running simulator")
    add_config_option(s)
    s.add_argument("device", help="device id from the config ('*' with action 'list': every simulator)")
    s.add_argument("action", help="simulator action ('list' shows them)")
    s.add_argument("args", nargs="*", help="key=value (values parsed as JSON when they can be)")
    s.set_defaults(fn=cmd_sim_ctl)

    from suitemon.daemon import kinds

    for feature in kinds.with_field("cli"):
        if feature.cli:  # always, on a row with_field("cli") returns; narrowed for the type
            kinds.load(feature.cli)(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "log_format", None) is None and args.command not in ("run", "sim"):
        logs.setup("warning", "auto")
    return args.fn(args) or EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
