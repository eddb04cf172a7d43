"""``suitemon demo``: a private broker, every simulator, the daemon and a live view, on 127.0.0.1.

The example config is made local first: serial ports become pty links in a temp
dir, TCP devices and servers get free loopback ports, the journal goes to a temp
state dir. Nothing needs root and nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import structlog

from suitemon.daemon import logs
from suitemon.daemon.broker import DemoBroker, free_port
from suitemon.daemon.checkpoints import load_or_create_signing_key
from suitemon.daemon.config import ConfigError, parse_config

# Package data: the repository root is the ``suitemon`` package (setup.py), so the same
# lookup finds examples/ in a checkout, an editable install and an installed wheel.
EXAMPLES = Path(str(resources.files("suitemon"))) / "examples"
EXAMPLE = EXAMPLES / "suite.toml"
log = structlog.get_logger("suitemon.demo")


def localize(data: dict[str, Any], tmp: Path, mqtt_port: int, protocol: str) -> dict[str, Any]:
    data = dict(data)
    data["mqtt"] = {**data.get("mqtt", {}), "host": "127.0.0.1", "port": mqtt_port, "protocol": protocol}
    data["mqtt"].pop("tls", None)
    data["mqtt"].pop("username", None)
    data["mqtt"].pop("password_file", None)
    data["state"] = {**data.get("state", {}), "dir": str(tmp / "state"), "synchronous": "normal"}
    data["simulation"] = {
        **data.get("simulation", {}),
        "control_host": "127.0.0.1",
        "control_port": free_port(),
    }
    devices = {}
    ports: dict[tuple, int] = {}
    for did, dev in data.get("devices", {}).items():
        dev = dict(dev)
        if dev.get("transport") == "rtu" or "serial_port" in dev:
            dev["serial_port"] = str(tmp / f"{did}.tty")
        if dev.get("transport") == "tcp":
            key = (dev.get("host"), dev.get("port"))  # devices sharing a gateway keep sharing it
            ports.setdefault(key, free_port())
            dev["host"], dev["port"] = "127.0.0.1", ports[key]
        devices[did] = dev
    data["devices"] = devices
    for name, section in list(data.items()):
        # Feature servers (DICOM receiver, board): loopback and a free port.
        if name not in ("mqtt", "simulation", "devices") and isinstance(section, dict) and "port" in section:
            section = dict(section)
            section["port"] = free_port()
            for key in ("host", "bind", "address"):
                if key in section:
                    section[key] = "127.0.0.1"
            data[name] = section
    return data


TOUR = EXAMPLES / "scenarios" / "tour.toml"
DEMO_LOGIN = "nurse1"


def endpoints(cfg, broker, board_url: str | None) -> list[str]:
    """Where each part of the demo listens, one line each, so a user can connect their own tools."""
    lines = [
        f"demo: broker {broker.kind} on 127.0.0.1:{broker.port} (MQTT {broker.protocol}); "
        f"topics {cfg.mqtt.base_topic}/{cfg.site.id}/#  "
        f"(mosquitto_sub -p {broker.port} -t '{cfg.mqtt.base_topic}/#' -v)"
    ]
    dicom = getattr(cfg, "dicom", None)
    if dicom is not None:
        callers = ", ".join(
            f"{p.ae_title}" + (f" from {p.address}" if p.address else "") for p in dicom.allow
        )
        first = dicom.allow[0].ae_title
        lines.append(
            f"demo: DICOM receiver {dicom.ae_title}@{dicom.bind}:{dicom.port}; allowed calling AE "
            f"{callers}  (storescu -aet {first} -aec {dicom.ae_title} {dicom.bind} {dicom.port} FILE.dcm)"
        )
    if board_url is not None:
        users = getattr(cfg.board, "users", {}) or {}
        login = DEMO_LOGIN if DEMO_LOGIN in users else next(iter(users), None)
        how = (
            f"log in as {login}, any password: the demo broker checks none, a site's broker does"
            if login
            else "view only: no [board.users] in the config"
        )
        lines.append(f"demo: board {board_url}  ({how})")
    lines.append(
        f"demo: simulator control {cfg.simulation.control_host}:{cfg.simulation.control_port}  "
        f"(suitemon sim-ctl ... DEVICE ACTION; '*' list shows the actions)"
    )
    return lines


async def _demo(args, cfg_path: Path) -> int:
    from suitemon.daemon.app import Daemon
    from suitemon.daemon.demo.liveview import LiveView, _ObserverAdapter
    from suitemon.daemon.demo.scenario import load_scenario, play
    from suitemon.daemon.demo.speed import speed_up
    from suitemon.simulators.host import SimHost

    speed = args.speed
    # The tour is written for the example suite's devices; another site's config gets none.
    tour = args.scenario is None and not args.no_tour and cfg_path.resolve() == EXAMPLE.resolve()  # noqa: ASYNC240 (startup, nothing else runs yet)
    if args.scenario is None and not args.no_tour and not tour:
        print(
            "demo: no guided tour for this config (it is written for examples/suite.toml); "
            "--scenario FILE plays one",
            flush=True,
        )
    try:
        scenario = load_scenario(args.scenario or TOUR) if (args.scenario or tour) else None
    except ConfigError as err:
        print(f"demo: the scenario is invalid:\n{err}", file=sys.stderr)
        return 2
    broker = DemoBroker(args.mqtt_port)
    await broker.start()
    tmp = (
        _KeptDir(args.keep)
        if getattr(args, "keep", None)
        else tempfile.TemporaryDirectory(prefix="suitemon-demo-")
    )
    view = host = daemon = board = None
    rc = 0
    try:
        raw = speed_up(tomllib.loads(cfg_path.read_text()), speed)  # noqa: ASYNC240 (startup, nothing else runs yet)
        local = localize(raw, Path(tmp.name), broker.port, broker.protocol)
        cfg = parse_config(local, str(cfg_path))
        if isinstance(tmp, _KeptDir):
            tmp.write_config(local)
        host = SimHost(cfg)
        await host.start()
        # The demo's journal is thrown away with its temporary state dir: its checkpoint key is
        # made here, quietly, rather than announced as a site's new key would be.
        load_or_create_signing_key(cfg.journal.paths(cfg.state.dir)[1], announce=False)
        daemon = Daemon(cfg, client_id=f"suitemon-demo-{cfg.site.id}")
        await daemon.start()
        board_url = None
        if not args.no_board and getattr(cfg, "board", None) is not None:
            from suitemon.daemon.board.server import Board

            board = Board(cfg, cfg.board)
            await board.start()
            board_url = f"http://{cfg.board.bind}:{board.port}/"
        view = LiveView("127.0.0.1", broker.port, cfg.mqtt.base_topic, cfg.site.id, broker.protocol)
        for line in endpoints(cfg, broker, board_url):
            print(line, flush=True)
        print(
            f"demo: state (journal, DICOM spool) in {tmp.name}"
            + (f"; timers and scenario {speed:g}x faster" if speed != 1 else ""),
            flush=True,
        )

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        duration = args.duration
        if duration is None and scenario is not None and not tour:
            duration = (
                scenario.length / speed
            )  # a chosen scenario ends the demo; after the tour the suite runs on
        interactive = sys.stdout.isatty() and not args.no_view
        messages: list[str] = []
        label = "tour" if tour else f"scenario '{scenario.name}'" if scenario else ""
        if scenario is not None:
            messages.append(f"{label}: {scenario.description}")

        async def scenario_task():
            fails = await play(
                scenario,
                sim=host.control,
                command=view.command,
                observer=_ObserverAdapter(view),
                say=messages.append,
                speed=speed,
            )
            messages.append(f"{label}: " + ("PASSED" if not fails else f"{len(fails)} expectation(s) FAILED"))
            messages.extend(f"  - {f}" for f in fails)
            return fails

        st = asyncio.create_task(scenario_task()) if scenario is not None else None
        t0 = time.monotonic()
        last_line = 0.0
        last_alarms = None
        while not stop.is_set():
            elapsed = time.monotonic() - t0
            if duration is not None and elapsed >= duration:
                break
            if interactive:
                view.draw(f"{elapsed:5.0f} s" + (f" / {duration:g} s" if duration else "  (Ctrl-C to stop)"))
                for m in messages[-6:]:
                    print(m)
            else:
                # A line every 5 s, and at once when the open alarms change, so a log shows them move.
                for m in messages:
                    print(m, flush=True)
                messages.clear()
                alarms = view.open_alarm_count()
                if elapsed - last_line >= 5 or alarms != last_alarms:
                    last_line, last_alarms = elapsed, alarms
                    print(view.summary_line(), flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 0.5 if not interactive else 1.0)
            except TimeoutError:
                pass
        if st is not None:
            if not st.done():
                st.cancel()
                if tour:  # stopping the tour early is the user's choice, not a failure
                    print(
                        f"tour: stopped at {time.monotonic() - t0:.0f} s of {scenario.length / speed:.0f} s",
                        flush=True,
                    )
                else:
                    print("scenario: stopped before its end", flush=True)
                    rc = 1
            else:
                fails = st.result()
                rc = 1 if fails else 0
            for m in messages:
                print(m, flush=True)
        print(view.summary_line(), flush=True)
    except ConfigError as err:
        print(f"demo: the config is invalid:\n{err}", file=sys.stderr)
        rc = 2
    finally:
        if view is not None:
            view.close()
        if board is not None:
            await board.stop()
        if daemon is not None:
            await daemon.stop()
        if host is not None:
            await host.stop()
        try:  # the embedded broker's shutdown must not hold the demo's exit
            await asyncio.wait_for(broker.stop(), 5.0)
        except (TimeoutError, Exception) as err:
            print(f"demo: broker did not stop cleanly: {err!r}", file=sys.stderr)
        tmp.cleanup()
    return rc


class _KeptDir:
    """``--keep DIR``: the demo's state stays in DIR, with the localised config as DIR/suite.toml,
    so ``suitemon report -c DIR/suite.toml`` can read what the run journaled."""

    def __init__(self, path: str):
        self.name = str(Path(path).resolve())
        Path(self.name).mkdir(parents=True, exist_ok=True)

    def write_config(self, data: dict[str, Any]) -> None:
        import tomli_w

        (Path(self.name) / "suite.toml").write_text(tomli_w.dumps(data))

    def cleanup(self) -> None:
        print(f"demo: state kept in {self.name}; config {self.name}/suite.toml", flush=True)


def run_demo(args) -> int:
    cfg_path = Path(args.config) if args.config else EXAMPLE
    if not cfg_path.exists():
        print(f"demo: no config at {cfg_path}", file=sys.stderr)
        return 2
    fmt = "console" if sys.stderr.isatty() else "json"
    if sys.stdout.isatty() and not args.no_view:
        # The live view owns the terminal; logs go to a file beside it.
        logfile = open(Path(tempfile.gettempdir()) / "suitemon-demo.log", "a")
        logs.setup("info", "json", stream=logfile)
        print(f"demo: logs in {logfile.name}")
    else:
        logs.setup("warning", fmt)
    return asyncio.run(_demo(args, cfg_path))
