"""Fixtures: one real Mosquitto per session, a fresh site id per test, processes cleaned up."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import pytest
import schema_check  # noqa: F401  (fails early if a schema is not valid JSON)
from helpers import SUITEMON, Mosquitto, Proc, Watcher, deep_merge, dump_toml, free_port, wait_until
from leak_guard import LeakGuard


def pytest_configure(config):
    if not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists():
        raise pytest.UsageError("mosquitto is not installed: run .ci/run (it installs what the tests need)")


def pytest_collection_modifyitems(config, items):
    """Modules holding soak tests first, then those holding slow tests, then the others largest first;
    each module's tests kept together. The README's command deals whole modules to the workers in
    this order (``--dist loadfile --no-loadscope-reorder``): a module fixture is set up once, and a
    two-minute test cannot start last and set the wall time of the whole suite."""
    rank: dict[str, int] = {}
    count: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        mine = 0 if item.get_closest_marker("soak") else 1 if item.get_closest_marker("slow") else 2
        rank[module] = min(rank.get(module, 2), mine)
        count[module] = count.get(module, 0) + 1

    def key(item) -> tuple[int, int]:
        module = item.nodeid.split("::")[0]
        return rank[module], -count[module] if rank[module] == 2 else 0

    items.sort(key=key)  # stable: the order within a module is kept


@pytest.fixture(autouse=True)
def no_leaks(request, monkeypatch):
    """Fail a test that leaves threads, asyncio tasks or open Modbus buses behind
    (``@pytest.mark.leaks_allowed("why")`` for the rare test that must)."""
    guard = LeakGuard()
    monkeypatch.setattr(asyncio, "run", guard.checked_run(asyncio.run))
    yield
    monkeypatch.undo()  # before the check: asyncio.run is the real one again for anything later
    leaks = guard.leaks()
    marker = request.node.get_closest_marker("leaks_allowed")
    if leaks and marker is None:
        pytest.fail("the test left running: " + "; ".join(leaks), pytrace=False)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


BASE = {
    "site": {"name": "Test suite"},
    "logging": {"level": "debug", "format": "json"},
    "areas": {
        "uptake1": {"name": "Uptake 1", "kind": "uptake_room"},
        "uptake3": {"name": "Uptake 3", "kind": "uptake_room"},
        "hotlab": {"name": "Hot lab", "kind": "hot_lab"},
    },
    "roles": {
        "room_nurse": {"name": "Room nurse", "recipients": ["nurse1", "nurse2"]},
        "suite_staff": {"name": "Suite staff", "recipients": ["nurse1", "nurse2", "rad1"]},
        "resus_team": {"name": "Resus", "recipients": ["switchboard"]},
        # The tests' people may send every command; tests of authorisation itself
        # (test_command_authority.py) configure their own roles without this one.
        "operators": {
            "name": "Test operators",
            "commands": ["*"],
            "members": [
                "nurse1",
                "nurse2",
                "rad1",
                "rps",
                "engineer",
                "eng1",
                "porter",
                "matrix",
                "radiographer1",
                "radiographer2",
                "c.boss",
                "scenario",
                "station1",
                "station2",
                "nurse3",
                "nurse4",
                "eng",
                "switchboard",
            ],
        },
    },
    "ladders": {
        "deterioration": {
            "steps": [
                {"role": "room_nurse", "timeout_s": 1.0},
                {"role": "suite_staff", "timeout_s": 1.0},
                {"role": "resus_team", "timeout_s": 1.0, "failsafe": True, "critical_care": True},
            ]
        },
    },
    "protocols": {
        "deterioration": {
            "who": "Resus team",
            "number": "2222",
            "location": "PET-CT, Block C",
            "first_actions": ["Stay with the patient", "Call 2222"],
        },
    },
}


class Suite:
    """One test's suite: a config file, its site id, and the processes started for it."""

    def __init__(self, tmp: Path, broker: Mosquitto, devices: dict, extra: dict | None = None):
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.site = "t" + uuid.uuid4().hex[:10]
        self.control_port = free_port()
        self.data = deep_merge(
            BASE,
            {
                "site": {"id": self.site},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5},
                "state": {"dir": str(tmp / "state"), "synchronous": "normal"},
                "simulation": {"control_port": self.control_port},
                "devices": devices,
            },
        )
        if extra:
            self.data = deep_merge(self.data, extra)
        self.path = tmp / "suite.toml"
        self.write()
        self.procs: list[Proc] = []

    def write(self) -> None:
        self.path.write_text(dump_toml(self.data))

    def topic(self, *parts: str) -> str:
        return "/".join(("suitemon", self.site, *parts))

    def start_daemon(self, watcher: Watcher | None = None, name: str = "daemon") -> Proc:
        p = Proc([*SUITEMON, "run", "-c", str(self.path), "--log-format", "json"], self.tmp / f"{name}.log")
        self.procs.append(p)
        if watcher is not None:
            self.wait_online(watcher, p)
        return p

    def wait_online(self, watcher: Watcher, p: Proc, timeout: float = 20) -> None:
        def online(w):
            if not p.alive():
                raise AssertionError(f"daemon exited early:\n{p.log_text()[-3000:]}")
            st = w.json_of(self.topic("status"))
            return st and st.get("state") == "online" and st.get("pid") == p.pid

        watcher.wait_for(online, timeout, what="daemon online")

    def start_sims(self, *devices: str) -> Proc:
        args = [*SUITEMON, "sim", "-c", str(self.path), "--log-format", "json"]
        for d in devices:
            args += ["--device", d]
        p = Proc(args, self.tmp / f"sim-{len(self.procs)}.log")
        self.procs.append(p)
        wait_until(lambda: self._control_up(p), 20, what="simulator control socket")
        return p

    def _control_up(self, p: Proc) -> bool:
        if not p.alive():
            raise AssertionError(f"simulator exited early:\n{p.log_text()[-3000:]}")
        try:
            self.sim("*", "list")
            return True
        except OSError:
            return False

    def sim(self, device: str, action: str, **args):
        from suitemon.simulators.host import send_control

        return asyncio.run(send_control("127.0.0.1", self.control_port, device, action, args))

    def play(self, scenario_path, watcher: Watcher, speed: float = 1.0) -> list[str]:
        """Play a scenario file against this suite's simulator process and daemon; return failures."""
        from suitemon.daemon.demo.scenario import load_scenario, play
        from suitemon.simulators.host import send_control

        scn = load_scenario(scenario_path)
        site = self.site

        class Obs:
            def alarm(self, alarm_id):
                return watcher.json_of(f"suitemon/{site}/alarm/{alarm_id}")

            def events(self):
                return watcher.events(site)

            def ever_raised(self, alarm_id):
                return any(
                    e["type"] == "alarm.raised" and e["alarm_id"] == alarm_id for e in watcher.events(site)
                )

        async def sim(device, action, args):
            return await send_control("127.0.0.1", self.control_port, device, action, args)

        def command(actor, verb, args):
            watcher.publish(self.topic("cmd", actor, verb), args)

        return asyncio.run(play(scn, sim=sim, command=command, observer=Obs(), speed=speed))

    def close(self) -> None:
        for p in reversed(self.procs):
            p.close()


@pytest.fixture
def make_suite(tmp_path, broker):
    suites: list[Suite] = []

    def factory(devices: dict | None = None, extra: dict | None = None) -> Suite:
        s = Suite(tmp_path / f"s{len(suites)}", broker, devices or {}, extra)
        suites.append(s)
        return s

    yield factory
    for s in suites:
        s.close()


@pytest.fixture
def watcher(broker):
    """A subscriber to suitemon/#; at the end every message it saw must match its JSON Schema."""
    w = Watcher(broker.port)
    yield w
    w.close()
    from schema_check import problems

    found = problems(w.messages)
    assert not found, "published payloads break the MQTT contract:\n" + "\n".join(found[:20])


def events_of(watcher: Watcher, site: str, type_prefix: str = "") -> list[dict]:
    return [e for e in watcher.events(site) if e["type"].startswith(type_prefix)]


def load_json(b: bytes):
    return json.loads(b)


# Fuzzing: short in CI, thousands of cases per target with SUITEMON_FUZZ=long.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("long" if __import__("os").environ.get("SUITEMON_FUZZ") == "long" else "ci")
