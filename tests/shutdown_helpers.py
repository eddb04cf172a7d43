"""Plumbing for the UPS / safe-shutdown integration tests: devices, configs, real MQTT targets."""

from __future__ import annotations

import json
import threading
import tomllib

import pytest
from helpers import REPO, free_port

from suitemon.simulators.shutdown_target import TargetClient

EXAMPLE = REPO / "examples" / "suite.toml"
SCENARIOS = REPO / "examples" / "scenarios"
AREAS = {"scanner": {"name": "Scanner room", "kind": "scanner_room"}}


def ups_device(transport: str, tmp_path, **kw) -> dict:
    """A UPS as the example has it (ids, pace), on a test-local pty or TCP port."""
    d = {
        "kind": "ups_apc",
        "name": "Test UPS",
        "location": "scanner",
        "transport": transport,
        "poll_s": 1.5,
        "on_battery_poll_s": 0.75,
        "timeout_s": 0.5,
        "sim": {"full_runtime_s": 480, "load_pct": 40, "shutdown_delay_s": 60, "return_delay_s": 10},
    }
    if transport == "tcp":
        d.update(host="127.0.0.1", port=free_port())
    else:
        d.update(serial_port=str(tmp_path / f"ups-{free_port()}.tty"))
    for k, v in kw.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return d


def example_shutdown() -> dict:
    return tomllib.loads(EXAMPLE.read_text())["shutdown"]


def short_shutdown(**kw) -> dict:
    """A quick sequence for policy tests: two command steps, then the UPS."""
    s = {
        "ups": "ups",
        "hold_off_s": 1.0,
        "triggers": {"on_battery_s": 30.0, "runtime_below_s": False, "debounce_s": 0.5},
        "targets": {"scanner": {"name": "Scanner"}, "workstations": {"name": "Workstations"}},
        "steps": [
            {
                "id": "stop_acquisitions",
                "target": "scanner",
                "command": "stop_new_acquisitions",
                "timeout_s": 1.5,
                "on_timeout": "proceed",
                "resume": "allow_acquisitions",
            },
            {
                "id": "workstations_off",
                "target": "workstations",
                "command": "shutdown",
                "timeout_s": 1.5,
                "on_timeout": "proceed",
                "resume": "wake",
            },
            {"id": "ups_outlets", "kind": "ups", "outlet_delay_s": 5, "timeout_s": 5.0},
        ],
    }
    for k, v in kw.items():
        if v is None:
            s.pop(k, None)
        elif isinstance(v, dict) and isinstance(s.get(k), dict):
            s[k] = {**s[k], **v}
        else:
            s[k] = v
    return s


def strip_none(d):
    if isinstance(d, dict):
        return {k: strip_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [strip_none(x) for x in d]
    return d


@pytest.fixture
def targets(broker):
    """start(suite, name, mode=, delay_s=) -> a real MQTT client answering as that target."""
    made: list[TargetClient] = []

    def start(suite, name: str, mode: str = "ack", delay_s: float = 0.0) -> TargetClient:
        t = TargetClient("127.0.0.1", broker.port, suite.site, name, mode=mode, delay_s=delay_s).start()
        made.append(t)
        return t

    yield start
    for t in made:
        t.stop()


def example_targets(suite, targets) -> dict[str, TargetClient]:
    """The example's targets with the example's simulated answer delays."""
    cfg = example_shutdown()["targets"]
    return {name: targets(suite, name, delay_s=t["sim"]["ack_delay_s"]) for name, t in cfg.items()}


def shutdown_events(watcher, site: str, type_: str | None = None) -> list[dict]:
    return [
        e
        for e in watcher.events(site)
        if e["type"].startswith("shutdown.") and (type_ is None or e["type"] == type_)
    ]


def state_of(watcher, suite) -> dict | None:
    return watcher.json_of(suite.topic("shutdown", "state"))


def play_all(runs) -> list[list[str]]:
    """Play scenarios on several suites at once (one per transport); return each one's failures."""
    results: list = [None] * len(runs)

    def go(i, suite, path, watcher):
        try:
            results[i] = suite.play(path, watcher)
        except Exception as err:  # surfaced by the assertion below
            results[i] = [f"play raised {err!r}"]

    threads = [threading.Thread(target=go, args=(i, *r)) for i, r in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def send_command(watcher, suite, actor: str, verb: str, body: dict, timeout: float = 10.0) -> dict:
    """Publish cmd/<actor>/<verb> and wait for the daemon's reply on reply/<actor>."""
    rid = f"t-{free_port()}"
    reply_t = suite.topic("reply", actor)
    watcher.publish(suite.topic("cmd", actor, verb), {**body, "request_id": rid})

    def got(w):
        for top, p, *_ in w.messages:
            if top == reply_t:
                r = json.loads(p)
                if r.get("request_id") == rid:
                    return r
        return None

    return watcher.wait_for(got, timeout, what=f"reply to {verb}")


def example_suite(make_suite, watcher, targets, tmp_path, transport: str):
    """The example's UPS and [shutdown] section on a test broker, with in-test targets
    answering after the example's simulated delays. Returns (suite, targets by name)."""
    suite = make_suite(
        {"ups": ups_device(transport, tmp_path)}, extra={"areas": AREAS, "shutdown": example_shutdown()}
    )
    suite.start_sims("ups")
    suite.start_daemon(watcher)
    tg = example_targets(suite, targets)
    watcher.wait_for(lambda w: (s := state_of(w, suite)) and s["armed"], 10, what="sequencer armed")
    watcher.wait_for(
        lambda w: (s := w.json_of(suite.topic("device", "ups", "state"))) and s["comm"] == "ok",
        10,
        what="UPS answering",
    )
    return suite, tg
