"""The sequence runner as a unit: real asyncio, no daemon, no broker.

The runner needs only its host (``SequenceHost``: state, config, journal, alarms, what the world
looks like), the topics and site for the command payloads, and a UPS lookup. Here the host is a
small in-process stand-in whose targets answer through ``runner.on_reply`` as the MQTT route would.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shutdown_helpers import short_shutdown

from suitemon.daemon.alarms import iso
from suitemon.daemon.contract import Topics
from suitemon.daemon.shutdown.config import ShutdownConfig
from suitemon.daemon.shutdown.runner import SequenceHost, SequenceRunner
from suitemon.daemon.shutdown.state import ABORTED, COMPLETED, DONE, INTERRUPTED, SequenceState
from suitemon.drivers.base import DriverError


class Host:
    """Journal and alarms as lists; targets that acknowledge (or stay silent) in-process."""

    def __init__(self, cfg: ShutdownConfig, silent: tuple[str, ...] = (), fail_on: str | None = None):
        self.cfg = cfg
        self.state = SequenceState.begin(
            cfg, {"name": "manual", "detail": "unit test", "power": False}, iso(time.time())
        )
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.alarms: dict[str, bool] = {}
        self.silent = silent
        self.fail_on = fail_on
        self.runner: SequenceRunner | None = None

    def record(self, type_: str, data: dict[str, Any] | None = None, *, actor: str = "system") -> Any:
        if type_ == self.fail_on:
            raise RuntimeError(f"journal refused {type_}")
        data = data or {}
        self.events.append((type_, data))
        answers = type_ == "shutdown.resume.sent" or (
            type_ in ("shutdown.step.started", "shutdown.step.resent")
            and data.get("target") not in self.silent
        )
        if answers and "correlation_id" in data:
            assert self.runner is not None
            asyncio.get_running_loop().call_soon(
                self.runner.on_reply,
                data["target"],
                data["correlation_id"],
                {"correlation_id": data["correlation_id"], "status": "done", "detail": "ok"},
            )

    def alarm(self, cause: str, present: bool, message: str = "", **_: Any) -> None:
        self.alarms[cause] = present

    def runtime_left(self, now: float) -> float | None:
        return None

    def mains_back_pending(self) -> bool:
        return False

    def occupied(self, area: str) -> bool:
        return False

    def types(self) -> list[str]:
        return [t for t, _ in self.events]


class Ups:
    """The UPS driver's command interface: confirms the countdown it was given."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    async def command(self, name: str, **args: Any) -> dict[str, Any]:
        self.commands.append((name, args))
        return {"countdown_s": args.get("delay_s"), "confirmed": True}


def _runner(host: Host, ups: Any) -> SequenceRunner:
    seen: SequenceHost = host  # typed as the protocol: a type checker holds the stand-in to it
    runner = SequenceRunner(
        seen,
        topics=Topics("suitemon", "unit"),
        site="unit",
        ups=lambda device_id: ups if device_id == host.cfg.ups else None,
    )
    host.runner = runner
    return runner


def _cfg(**kw: Any) -> ShutdownConfig:
    return ShutdownConfig.model_validate(short_shutdown(**kw))


def test_a_sequence_runs_every_step_and_returns_completed():
    host, ups = Host(_cfg()), Ups()
    phase = asyncio.run(asyncio.wait_for(_runner(host, ups).run(), 10))
    assert phase == COMPLETED
    assert [s.status for s in host.state.steps] == [DONE, DONE, DONE]
    assert ups.commands == [("shutdown_return", {"delay_s": 5})]
    assert host.types().count("shutdown.step.acked") == 3 and host.types()[-1] == "shutdown.completed"
    assert host.alarms == {}


def test_an_abort_before_the_point_of_no_return_resumes_and_returns_aborted():
    host, ups = Host(_cfg(), silent=("scanner",)), Ups()
    runner = _runner(host, ups)

    async def main() -> str | None:
        walk = asyncio.create_task(runner.run())
        await asyncio.sleep(0.2)  # the scanner has not answered its first step
        runner.request_abort("mains back", "nurse1")
        return await asyncio.wait_for(walk, 5)

    assert asyncio.run(main()) == ABORTED
    first = host.state.steps[0]
    assert first.status == INTERRUPTED and first.resume_status == "done"
    assert ups.commands == [], "the UPS was commanded although the sequence aborted before it"
    assert "shutdown.aborted" in host.types() and host.types()[-1] == "shutdown.resumed_all"


def test_a_ups_not_running_here_fails_its_step_loudly():
    cfg = _cfg(steps=[{"id": "ups_outlets", "kind": "ups", "outlet_delay_s": 5, "timeout_s": 1.0}])
    host = Host(cfg)
    phase = asyncio.run(asyncio.wait_for(_runner(host, None).run(), 5))
    assert phase == COMPLETED
    assert host.alarms.get("ups_unconfirmed") is True
    assert "did NOT confirm" in (host.state.message or "")
    timeout = dict(host.events)["shutdown.step.timeout"]
    assert DriverError.__name__ in timeout["error"] and "not running" in timeout["error"]


def test_an_internal_error_returns_none_and_raises_an_alarm():
    host = Host(_cfg(), fail_on="shutdown.step.acked")
    phase = asyncio.run(asyncio.wait_for(_runner(host, Ups()).run(), 5))
    assert phase is None
    assert host.alarms.get("internal_error") is True
