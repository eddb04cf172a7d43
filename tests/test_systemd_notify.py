"""sd_notify and the watchdog rule, against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from notify_socket import NotifySocket, gaps
from service_helpers import points_device, start_daemon_env

from suitemon.daemon.devices import DeviceRunner
from suitemon.daemon.health import HANG_GRACE_S, hung_parts, progress_bound
from suitemon.daemon.rules.points import PointRules
from suitemon.daemon.sdnotify import Notifier, socket_address, watchdog_timeout
from suitemon.drivers.modbus_points import Config, ModbusPointsDriver


@pytest.fixture
def notify(tmp_path):
    s = NotifySocket(tmp_path)
    yield s
    s.close()


# -- the protocol itself ------------------------------------------------------------------
@pytest.mark.parametrize(
    "env,pid,expected",
    [
        ({}, 10, None),
        ({"WATCHDOG_USEC": "3000000"}, 10, 3.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "10"}, 10, 3.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "11"}, 10, None),  # armed for another process
        ({"WATCHDOG_USEC": "0"}, 10, None),
        ({"WATCHDOG_USEC": "soon"}, 10, None),
    ],
)
def test_watchdog_timeout_follows_sd_watchdog_enabled(env, pid, expected):
    assert watchdog_timeout(env, pid) == expected


def test_abstract_and_path_addresses_reach_a_real_socket(tmp_path):
    assert socket_address("@x") == b"\0x" and socket_address("/run/x") == "/run/x"
    assert socket_address("vsock:2:1") is None and socket_address("@") is None
    for abstract in (False, True):
        s = NotifySocket(tmp_path / str(abstract), abstract=abstract) if abstract else NotifySocket(tmp_path)
        try:
            n = Notifier(socket_address(s.env_value))
            assert n.ready("devices 1 ok; line\nbreak")
            assert n.watchdog()
            got = s.wait_for(lambda ns: len(ns.datagrams) >= 2, 5, "two datagrams")
            assert got
            assert s.datagrams[0][1] == {"READY": "1", "STATUS": "devices 1 ok; line break"}
            assert s.datagrams[1][1] == {"WATCHDOG": "1"}
        finally:
            s.close()


def test_notifier_without_socket_is_silent_and_a_dead_socket_does_not_raise(tmp_path):
    assert not Notifier(None).ready()
    n = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert n.watchdog() is False and n.status("still running") is False
    with pytest.raises(ValueError):
        Notifier(str(tmp_path / "x")).notify("READY=1\nWATCHDOG=1")


# -- the watchdog rule on real runners ---------------------------------------------------------
def runner_for(did, dev) -> DeviceRunner:
    # The rule reads progress stamps only; the runner needs no more context than an empty alarm table.
    ctx = SimpleNamespace(engine=SimpleNamespace(alarms={}))
    return DeviceRunner(did, dev, ModbusPointsDriver(did, dev), PointRules(did, dev, ctx), ctx)


def test_progress_rule_flags_only_runners_past_their_bound():
    dev = Config(kind="modbus_points", transport="tcp", poll_s=1.0, timeout_s=0.5, port=1502)
    bound = progress_bound(runner_for("env", dev))
    # open and poll each cut at the deadline (4 * 0.5 + 0.5), one period of sleep, grace.
    assert bound == pytest.approx(2 * 2.5 + 1.0 + HANG_GRACE_S)

    async def scenario():
        async def forever():
            await asyncio.Event().wait()

        async def ends():
            return None

        runners = {}
        for did in ("fresh", "slow_but_within", "stuck", "ended"):
            r = runner_for(did, dev)
            r.task = asyncio.create_task(ends() if did == "ended" else forever())
            runners[did] = r
        await asyncio.sleep(0)
        now = time.monotonic()
        runners["fresh"].last_progress = now - 0.1
        runners["slow_but_within"].last_progress = now - (bound - 0.5)
        runners["stuck"].last_progress = now - (bound + 1.0)
        runners["ended"].last_progress = now
        essential = {"age-watch": asyncio.create_task(forever())}
        problems = hung_parts(runners, essential, now)
        for r in runners.values():
            r.task.cancel()
        essential["age-watch"].cancel()
        await asyncio.gather(
            *(r.task for r in runners.values()), essential["age-watch"], return_exceptions=True
        )
        return problems, hung_parts({}, essential, now)

    problems, after = asyncio.run(scenario())
    assert problems == ["device stuck: no poll finished for 9 s", "device ended: runner ended"]
    assert after == ["age-watch task ended"]


# -- the daemon under a fake systemd --------------------------------------------------------------
def test_ready_after_first_polls_then_status_and_regular_watchdog_pings(make_suite, watcher, notify):
    suite = make_suite({"env": points_device()})
    suite.start_sims()
    d = start_daemon_env(suite, watcher, notify.env(watchdog_s=3.0))
    ready = notify.wait_for(lambda n: n.first("READY", "1"), 10, "READY=1")
    # READY waits for the first poll of every device, so it already reports the device.
    assert ready["STATUS"].startswith("devices 1 ok, 0 stale, 0 lost; 0 open alarms; backlog")
    assert "journal ok" in ready["STATUS"]
    t_ready = notify.times("READY", "1")[0]
    notify.wait_for(lambda n: len(n.times("WATCHDOG", "1", since=t_ready)) >= 4, 10, "four pings")
    pings = notify.times("WATCHDOG", "1", since=t_ready)
    assert max(gaps(pings)) < 3.0, gaps(pings)  # always inside WatchdogSec (pinged every third)
    assert notify.first("NOTIFY_SOCKET") is None

    # STATUS follows the suite: a silent device shows as lost, with its alarm open.
    suite.sim("env", "fault", silent=True)
    notify.wait_for(
        lambda n: any("0 ok, 0 stale, 1 lost; 1 open alarms" in s for s in n.statuses()),
        10,
        "STATUS showing the lost device",
    )
    # A lost device is the device's problem, not a hang: the pings go on.
    t_lost = time.monotonic()
    notify.wait_for(lambda n: len(n.times("WATCHDOG", "1", since=t_lost)) >= 3, 5, "pings while lost")
    assert d.alive()


def test_abstract_socket_and_stopping_on_sigterm(make_suite, watcher, tmp_path):
    notify = NotifySocket(tmp_path, abstract=True)
    try:
        suite = make_suite({"env": points_device()})
        suite.start_sims()
        d = start_daemon_env(suite, watcher, notify.env(watchdog_s=2.0))
        notify.wait_for(lambda n: n.first("READY", "1") and n.times("WATCHDOG", "1"), 10, "READY and a ping")
        assert d.terminate(10) == 0
        stop = notify.first("STOPPING", "1")
        assert stop is not None and stop["STATUS"].startswith("stopping")
    finally:
        notify.close()


def test_slow_device_within_its_deadline_is_not_a_hang(make_suite, watcher, notify):
    # Each answer takes 1.5 s (under the 2 s response timeout), three requests a poll:
    # the runner sits in one poll for ~4.5 s, more than twice WatchdogSec, legitimately.
    suite = make_suite({"env": points_device(poll_s=0.2, timeout_s=2.0)})
    suite.start_sims()
    start_daemon_env(suite, watcher, notify.env(watchdog_s=2.0))
    notify.wait_for(lambda n: n.first("READY", "1"), 15, "READY=1")
    state_t = suite.topic("device", "env", "state")
    watcher.wait_for(lambda w: (s := w.json_of(state_t)) and s["comm"] == "ok", 10, what="fresh state")
    suite.sim("env", "fault", delay_s=1.5)
    t0 = time.monotonic()

    def reading_times(w):
        out = []
        for topic, payload, _, at in w.messages:
            if topic == state_t and at >= t0 and payload:
                ts = json.loads(payload)["ts"]
                if not out or out[-1][0] != ts:
                    out.append((ts, at))
        return out

    watcher.wait_for(lambda w: len(reading_times(w)) >= 3, 20, what="three slow readings")
    arrivals = [at for _, at in reading_times(watcher)]
    assert max(gaps(arrivals)) > 4.0, gaps(arrivals)  # the runner really was stuck in a poll
    pings = notify.times("WATCHDOG", "1", since=t0)
    assert pings and max(gaps([t0, *pings])) < 2.0, gaps([t0, *pings])
    assert not any("WITHHELD" in s for s in notify.statuses())


class WedgedDeviceServer:
    """An RFC 2217 serial device server that accepts connections and then says nothing.

    pyserial negotiates RFC 2217 inside ``open()``, synchronously, waiting up to the URL's
    ``timeout``: the Modbus driver's open blocks the daemon's event loop that long. It is a
    real wedged network serial port, and a real hang of the driver.
    """

    def __init__(self, port: int):
        self.port = port
        self.conns: list[socket.socket] = []
        self.srv: socket.socket | None = None

    def start(self) -> None:
        self.srv = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.srv.settimeout(0.2)
        self._run = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self._run:
            try:
                c, _ = self.srv.accept()
                self.conns.append(c)
            except OSError:
                continue

    def stop(self) -> None:
        self._run = False
        self.thread.join(2)
        self.srv.close()
        for c in self.conns:
            c.close()


def test_driver_hung_in_a_blocking_open_stops_the_pings(make_suite, watcher, notify):
    from helpers import free_port

    port = free_port()
    wedge_s = 6
    bench = {
        "kind": "modbus_points",
        "name": "Bench IO via device server",
        "transport": "rtu",
        "serial_port": f"rfc2217://127.0.0.1:{port}?timeout={wedge_s}",
        "poll_s": 0.5,
        "timeout_s": 0.3,
        "comm_loss_after": 2,
    }
    suite = make_suite({"env": points_device(), "bench": bench})
    suite.start_sims("env")
    d = start_daemon_env(suite, watcher, notify.env(watchdog_s=1.5))
    # Nothing listens yet: the open is refused at once, the device is lost, pings go on.
    notify.wait_for(lambda n: any("1 lost" in s for s in n.statuses()), 15, "bench device lost")
    t_ok = time.monotonic()
    notify.wait_for(lambda n: len(n.times("WATCHDOG", "1", since=t_ok)) >= 3, 5, "pings with a dead device")

    wedged = WedgedDeviceServer(port)
    wedged.start()
    try:
        t_wedge = time.monotonic()

        # The next open blocks the loop for ~6 s: no ping for far longer than WatchdogSec.
        def silent_stretch(n):
            pings = [t_wedge, *n.times("WATCHDOG", "1", since=t_wedge)]
            return max([*gaps(pings), time.monotonic() - pings[-1]]) > 4.0

        notify.wait_for(silent_stretch, 20, "a ping gap longer than WatchdogSec")
    finally:
        wedged.stop()
    # Once the device server is gone the open fails fast again and the pings come back.
    t_back = time.monotonic()
    notify.wait_for(lambda n: len(n.times("WATCHDOG", "1", since=t_back)) >= 3, 3 * wedge_s, "pings again")
    assert d.alive()
    assert "event loop was blocked" in d.log_text()
