"""Scripted scenarios: timed actions on simulators and MQTT commands, with expectations.

The format is documented in docs/scenarios.md. The same runner serves the demo
(``suitemon demo --scenario FILE``) and the tests, so a scenario that passes in CI
is the one an engineer watches on the bench.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field, ValidationError, model_validator

from suitemon.daemon.config import ConfigError, ConfigIssue, issues_from
from suitemon.drivers.config import Strict


class Step(Strict):
    at: float = Field(ge=0)
    sim: str | None = None
    action: str | None = None
    command: str | None = None
    actor: str = "scenario"
    args: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None
    say: str | None = Field(None, min_length=1, description="narration only: print this line")
    wait_event: str | None = Field(
        None, min_length=1, description="hold the timeline until this event is seen"
    )
    where: dict[str, Any] = Field(default_factory=dict)
    within: float = Field(30.0, gt=0, le=3600, description="longest wait for wait_event (scenario seconds)")

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if sum(x is not None for x in (self.sim, self.command, self.say, self.wait_event)) != 1:
            raise ValueError("a step has exactly one of sim + action, command, say, wait_event")
        if self.sim is not None and not self.action:
            raise ValueError("a sim step needs an action")
        if self.action is not None and self.sim is None:
            raise ValueError("action belongs to a sim step")
        return self

    def label(self) -> str:
        if self.say is not None:
            return self.say
        if self.wait_event is not None:
            return self.note or f"waiting for {self.wait_event} {self.where or ''}".rstrip()
        return self.note or (
            f"{self.sim}.{self.action} {self.args}"
            if self.sim
            else f"{self.actor} -> {self.command} {self.args}"
        )


class Expect(Strict):
    by: float = Field(ge=0)
    alarm: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    event: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    absent_alarm: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Expect:
        if sum(x is not None for x in (self.alarm, self.event, self.absent_alarm)) != 1:
            raise ValueError("an expectation names exactly one of alarm, event, absent_alarm")
        return self

    def describe(self) -> str:
        if self.alarm:
            return f"by {self.by:g} s alarm {self.alarm} has {self.fields}"
        if self.event:
            return f"by {self.by:g} s an event {self.event} with {self.where or 'any fields'}"
        return f"until {self.by:g} s alarm {self.absent_alarm} never raised"


class Scenario(Strict):
    name: str
    description: str = ""
    duration_s: float | None = Field(None, gt=0)
    step: list[Step] = Field(default_factory=list)
    expect: list[Expect] = Field(default_factory=list)

    @property
    def length(self) -> float:
        if self.duration_s is not None:
            return self.duration_s
        ends = [s.at for s in self.step] + [e.by for e in self.expect]
        return (max(ends) if ends else 0) + 5


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError([ConfigIssue("", f"cannot read scenario: {err}")], str(path)) from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ConfigError(issues_from(err), str(path)) from None


class Observer(Protocol):
    def alarm(self, alarm_id: str) -> dict | None: ...
    def events(self) -> list[dict]: ...
    def ever_raised(self, alarm_id: str) -> bool: ...


def dotted(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return _MISSING
    return obj


_MISSING = object()


def seen(obs: Observer, event: str, where: dict[str, Any]) -> bool:
    return any(
        ev.get("type") == event and all(dotted(ev, k) == v for k, v in where.items()) for ev in obs.events()
    )


def check(expect: Expect, obs: Observer) -> str | None:
    """None when the expectation holds now, else why not."""
    if expect.alarm:
        rec = obs.alarm(expect.alarm)
        if rec is None:
            return f"{expect.describe()}: no such alarm was published"
        bad = {k: dotted(rec, k) for k, v in expect.fields.items() if dotted(rec, k) != v}
        return f"{expect.describe()}: got {bad}" if bad else None
    if expect.event:
        return None if seen(obs, expect.event, expect.where) else f"{expect.describe()}: not seen"
    if obs.ever_raised(expect.absent_alarm):
        return f"{expect.describe()}: it was raised"
    return None


SimCall = Callable[[str, str, dict], Awaitable[Any]]
CommandCall = Callable[[str, str, dict], Any]


async def play(
    scn: Scenario,
    *,
    sim: SimCall,
    command: CommandCall,
    observer: Observer,
    say: Callable[[str], None] = lambda s: None,
    speed: float = 1.0,
) -> list[str]:
    """Run the timeline; return the expectations that failed (empty: the scenario passed).

    ``speed`` divides every time. A ``wait_event`` step holds the clock until the event is seen,
    so what follows keeps its spacing from that event however long the suite took to get there
    (a loaded machine or a sped-up run does not race the daemon's own polls).
    """
    items: list[tuple[float, int, Any]] = [(s.at, 0, s) for s in scn.step] + [
        (e.by, 1, e) for e in scn.expect
    ]
    items.sort(key=lambda x: (x[0], x[1]))
    t0 = time.monotonic()
    held = 0.0  # seconds (real) the timeline has been held by wait_event steps
    failures: list[str] = []
    for at, _, item in items:
        delay = t0 + held + at / speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if isinstance(item, Step):
            label = item.label()
            say(f"t={at:6.1f}s  {label}")
            if item.say is not None:
                continue
            if item.wait_event is not None:
                started = time.monotonic()
                deadline = started + item.within / speed
                while not seen(observer, item.wait_event, item.where):
                    if time.monotonic() >= deadline:
                        failures.append(
                            f"t={at:g}s {item.wait_event} {item.where} not seen within {item.within:g} s"
                        )
                        break
                    await asyncio.sleep(0.05)
                held += time.monotonic() - started
                continue
            try:
                if item.sim:
                    await sim(item.sim, item.action, item.args)
                else:
                    res = command(item.actor, item.command, item.args)
                    if asyncio.iscoroutine(res):
                        await res
            except Exception as err:  # a failed step is a failed scenario, not a crash
                failures.append(f"t={at:g}s step {label} failed: {err}")
        else:
            why = check(item, observer)
            say(f"t={at:6.1f}s  expect {item.describe()}: {'ok' if why is None else 'FAILED'}")
            if why is not None:
                failures.append(why)
    return failures
