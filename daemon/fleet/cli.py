"""``suitemon fleet run|migrate|report -c FLEETFILE``."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


# The central side has its own file: a fleet collector is not a suite.
FLEET_CONFIG = "/etc/suitemon/fleet.toml"


def add_parser(sub) -> None:
    s = sub.add_parser("fleet", help="central side: sites' events into PostgreSQL; compare sites")
    s.add_argument(
        "action",
        choices=["run", "setup", "migrate", "report"],
        help="run: the collector; setup: create or update the cluster's event stream and its consumer; "
        "migrate: bring the database schema up to date; report: compare sites",
    )
    s.add_argument(
        "-c",
        "--config",
        default=FLEET_CONFIG,
        metavar="FILE",
        help=f"the fleet file (docs/fleet.md; default: {FLEET_CONFIG})",
    )
    s.add_argument(
        "--since", help="report: from this date/time (ISO 8601, UTC; default 7 days before --until)"
    )
    s.add_argument("--until", help="report: up to this date/time (default now)")
    s.add_argument(
        "--format", choices=["text", "csv"], default="text", help="report: text table or CSV (default text)"
    )
    s.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        help="log rendering (auto: console on a terminal, else JSON)",
    )
    s.set_defaults(fn=cmd_fleet)


def _when(s: str | None) -> datetime | None:
    if s is None:
        return None
    d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def cmd_fleet(args) -> int:
    from suitemon.daemon import logs
    from suitemon.daemon.fleet.config import FleetConfigError, load_fleet

    try:
        cfg = load_fleet(args.config)
    except FleetConfigError as e:
        print(f"invalid fleet file: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        import psycopg
    except ImportError:
        print("suitemon fleet needs psycopg: pip install 'suitemon[fleet]'", file=sys.stderr)
        return EXIT_FAIL
    from suitemon.daemon.fleet.store import connect

    if args.action == "run":
        from suitemon.daemon.fleet.collector import Collector

        logs.setup("info", args.log_format or "auto")
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        return Collector(cfg).run(stop)
    if args.action == "setup":
        return _setup(cfg)
    try:
        with connect(cfg.database) as conn:
            if args.action == "migrate":
                from suitemon.daemon.fleet.migrate import migrate

                done = migrate(conn)
                print("applied: " + (", ".join(done) if done else "nothing (up to date)"))
                return EXIT_OK
            from suitemon.daemon.fleet.report import as_csv, as_text, build

            rep = build(conn, _when(args.since), _when(args.until))
    except psycopg.Error as e:
        print(f"database: {e}".strip(), file=sys.stderr)
        return EXIT_FAIL
    sys.stdout.write(as_csv(rep) if args.format == "csv" else as_text(rep))
    return EXIT_OK


def _setup(cfg) -> int:
    """Create (or bring to the fleet file's settings) the collectors' shared durable consumer: run
    once at deployment, before the sites are bridged, so the cluster holds every event from the
    first one on, whether a collector runs or not."""
    import asyncio
    import time

    import nats.errors
    from nats.js.errors import APIError

    from suitemon.daemon.fleet.stream import StreamMissing, connect, ensure

    async def go() -> list[str]:
        nc = await connect(cfg, f"suitemon-fleet-setup-{cfg.collector.id}", max_reconnect_attempts=0)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    return await ensure(nc.jetstream(timeout=10), cfg, update=True)
                except StreamMissing:
                    if time.monotonic() > deadline:
                        raise
                    _mqtt_hello(cfg)  # the MQTT layer creates its stream for the account's first client
                    await asyncio.sleep(1)
        finally:
            await nc.close()

    try:
        done = asyncio.run(go())
    except (OSError, TimeoutError, nats.errors.Error, APIError, StreamMissing) as e:
        print(f"cluster: {e or type(e).__name__}", file=sys.stderr)
        return EXIT_FAIL
    print("done: " + ("; ".join(done) if done else "nothing (the consumer is as configured)"))
    return EXIT_OK


def _mqtt_hello(cfg) -> None:
    from suitemon.daemon.fleet.config import central_client

    m = cfg.mqtt
    c = central_client(cfg, f"suitemon-fleet-setup-{cfg.collector.id}")
    for server in m.servers:
        host, _, port = server.rpartition(":")
        try:
            c.connect(host, int(port), keepalive=10)
        except OSError:
            continue
        c.loop(2.0)
        c.disconnect()
        return
