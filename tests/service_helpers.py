"""Starting the daemon as systemd would: with NOTIFY_SOCKET / WATCHDOG_USEC in its environment."""

from __future__ import annotations

from helpers import SUITEMON, Proc, free_port


def start_daemon_env(suite, watcher, env: dict[str, str], name: str = "daemon") -> Proc:
    p = Proc(
        [*SUITEMON, "run", "-c", str(suite.path), "--log-format", "json"], suite.tmp / f"{name}.log", env=env
    )
    suite.procs.append(p)
    if watcher is not None:
        suite.wait_online(watcher, p)
    return p


def points_device(poll_s: float = 0.2, timeout_s: float = 0.2, **kw) -> dict:
    d = {
        "kind": "modbus_points",
        "name": "Env sensor",
        "location": "hotlab",
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": free_port(),
        "poll_s": poll_s,
        "timeout_s": timeout_s,
        "comm_loss_after": 3,
        "sim": {"drift": False},
        "limits": {"temperature": {"high": 28.0, "hysteresis": 0.5, "priority": "low"}},
    }
    d.update(kw)
    return d
