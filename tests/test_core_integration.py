"""End to end through real parts: simulator (Modbus TCP / RTU over a pty) -> daemon -> Mosquitto."""

from __future__ import annotations

import time

import pytest
from helpers import free_port


def points_device(transport: str, tmp_path, poll_s=0.2, **kw) -> dict:
    d = {
        "kind": "modbus_points",
        "name": "Env sensor",
        "location": "hotlab",
        "transport": transport,
        "poll_s": poll_s,
        "timeout_s": 0.1,
        "comm_loss_after": 3,
        "limits": {"temperature": {"high": 28.0, "hysteresis": 0.5, "priority": "low"}},
    }
    if transport == "tcp":
        d.update(host="127.0.0.1", port=free_port())
    else:
        d.update(serial_port=str(tmp_path / "env.tty"), baudrate=19200)
    d.update(kw)
    return d


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_silent_device_raises_comm_lost_within_three_polls_and_recovery_clears_it(
    transport, make_suite, watcher, tmp_path
):
    poll = 0.2
    suite = make_suite({"env": points_device(transport, tmp_path, poll)})
    suite.start_sims()
    suite.start_daemon(watcher)
    state_t = suite.topic("device", "env", "state")
    watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and not s["stale"] and s["comm"] == "ok",
        10,
        what="fresh device state",
    )
    assert watcher.json_of(state_t)["values"]["temperature"] == pytest.approx(21.5, abs=1)

    alarm_t = suite.topic("alarm", "env.comm_lost")
    silent_at = time.monotonic()
    suite.sim("env", "fault", silent=True)
    rec = watcher.wait_for(
        lambda w: (a := w.json_of(alarm_t)) and a["state"] == "active" and a, 5, what="comm-lost alarm"
    )
    took = time.monotonic() - silent_at
    # 3 polls of 0.2 s, each failing after its 0.1 s timeout, plus the last poll in flight.
    assert took <= 3 * poll + 0.1 + 0.35, f"comm loss took {took:.2f} s"
    assert rec["kind"] == "technical" and rec["priority"] == "high" and rec["source"] == "env"
    stale = watcher.wait_for(lambda w: (s := w.json_of(state_t)) and s["stale"] and s, 5, what="stale state")
    assert stale["comm"] == "lost"

    suite.sim("env", "clear")
    watcher.wait_for(lambda w: w.json_of(alarm_t)["state"] == "closed", 5, what="alarm cleared")
    assert watcher.json_of(alarm_t)["closed_reason"] == "condition ended"
    watcher.wait_for(lambda w: not w.json_of(state_t)["stale"], 5, what="fresh again")

    def types(w):
        return [e["type"] for e in w.events(suite.site) if e["alarm_id"] == "env.comm_lost"]

    watcher.wait_for(lambda w: len(types(w)) >= 2, 5, what="cleared event")
    assert types(watcher) == ["alarm.raised", "alarm.cleared"]


def test_limit_alarm_with_hysteresis_and_status(make_suite, watcher, tmp_path):
    suite = make_suite({"env": points_device("tcp", tmp_path, 0.1)})
    suite.start_sims()
    suite.start_daemon(watcher)
    suite.sim("env", "drift", on=False)
    alarm_t = suite.topic("alarm", "env.temperature.high")
    suite.sim("env", "set", temperature=29.0)
    watcher.wait_for(lambda w: (a := w.json_of(alarm_t)) and a["state"] == "active", 5, what="high alarm")
    suite.sim("env", "set", temperature=27.8)  # below the limit but inside the hysteresis band
    state_t = suite.topic("device", "env", "state")
    watcher.wait_for(lambda w: w.json_of(state_t)["values"]["temperature"] == 27.8, 5, what="27.8 seen")
    assert watcher.json_of(alarm_t)["state"] == "active"
    suite.sim("env", "set", temperature=27.0)
    watcher.wait_for(lambda w: w.json_of(alarm_t)["state"] == "closed", 5, what="cleared below the band")
    status = watcher.json_of(suite.topic("status"))
    assert status["state"] == "online" and status["site"] == suite.site


def test_graceful_stop_publishes_offline_and_exits_zero(make_suite, watcher, tmp_path):
    suite = make_suite({"env": points_device("tcp", tmp_path)})
    suite.start_sims()
    d = suite.start_daemon(watcher)
    assert d.terminate(10) == 0
    st = watcher.wait_for(
        lambda w: (s := w.json_of(suite.topic("status"))) and s["state"] == "offline" and s, 5
    )
    assert st["reason"] == "stopped"


def test_dead_daemon_is_announced_by_its_last_will(make_suite, watcher, tmp_path):
    """A monitor that dies must not look like a quiet suite: the broker publishes offline for it."""
    suite = make_suite({"env": points_device("tcp", tmp_path)})
    suite.start_sims()
    d = suite.start_daemon(watcher)
    killed = time.monotonic()
    d.kill9()
    st = watcher.wait_for(
        lambda w: (s := w.json_of(suite.topic("status"))) and s["state"] == "offline" and s,
        15,
        what="Last Will",
    )
    assert st["reason"] == "connection lost"
    # keepalive_s = 5 in the tests: the broker gives up after 1.5 keepalives.
    assert time.monotonic() - killed < 5 * 1.5 + 2


def test_a_second_daemon_for_the_same_site_is_reported_loudly(make_suite, watcher, tmp_path):
    """Two daemons with one client id knock each other off the broker; the one knocked off says why."""
    suite = make_suite({"env": points_device("tcp", tmp_path)})
    suite.start_sims()
    first = suite.start_daemon(watcher)
    suite.data["state"]["dir"] = str(suite.tmp / "state2")  # its own journal, same site and client id
    suite.write()
    second = suite.start_daemon(watcher, name="daemon-b")
    from helpers import wait_until

    wait_until(
        lambda: "MQTT CONNECTION FLAPPING" in first.log_text() + second.log_text(),
        20,
        what="the flapping connection reported",
    )
