"""The ``[shutdown]`` config section: triggers, targets and the ordered steps.

Validation refuses what would make the sequence unsafe rather than fixing it: the
UPS command must be the last step (so power returning can never leave the suite off
for good), step ids are unique, every target is declared, and the point of no
return names a real step.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable, Literal

from pydantic import BeforeValidator, Field, model_validator

from suitemon.drivers.config import Id, Strict

COMMAND_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


def _no_true(v: Any) -> Any:
    if v is True:
        raise ValueError("give a number, or false to turn this trigger off")
    return v


def Off(number: Any) -> Any:
    """A trigger threshold that ``false`` turns off (TOML has no null)."""
    return Annotated[Literal[False] | number, BeforeValidator(_no_true)]


class Triggers(Strict):
    on_battery_s: Off(Annotated[float, Field(gt=0, le=86400)]) = Field(
        60.0, description="on battery this long (a self-test does not count); false: off")
    runtime_below_s: Off(Annotated[float, Field(ge=0)]) = Field(
        300.0, description="on battery with runtime <= this; false: off")
    charge_below_pct: Off(Annotated[float, Field(ge=0, le=100)]) = Field(
        False, description="on battery with charge <= this; false: off")
    shutdown_imminent: bool = Field(True, description="the UPS signals shutdown imminent")
    comm_lost_on_battery: bool = Field(True, description="UPS unreachable while it was on battery (as NUT)")
    debounce_s: float = Field(5.0, ge=0, le=600,
                              description="each condition (but on_battery_s) must hold this long; apcupsd uses 5 s")
    manual: bool = Field(True, description="allow the manual 'shutdown' command (needs a confirmation)")


class Target(Strict):
    """Someone who takes shutdown commands on suitemon/<site>/shutdown/cmd/<target id>."""

    name: str | None = None
    sim: dict[str, Any] = Field(default_factory=dict,
                                description="options for the shutdown-target simulator; ignored by the daemon")


class Step(Strict):
    id: Id
    kind: Literal["command", "ups"] = "command"
    description: str | None = None
    target: Id | None = None
    command: str | None = Field(None, pattern=COMMAND_NAME)
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(gt=0, le=3600, description="wait this long for the target's acknowledgement")
    on_timeout: Literal["proceed", "hold"] = Field(
        "proceed", description="proceed to the next step, or hold here until acknowledged or released")
    critical: bool = Field(False, description="never skipped when the remaining runtime runs short")
    resume: str | None = Field(None, pattern=COMMAND_NAME, description="sent to the target if the sequence aborts")
    resume_args: dict[str, Any] = Field(default_factory=dict)
    outlet_delay_s: int | None = Field(None, ge=1, le=32767,
                                       description="ups step: seconds before the UPS turns its outlets off")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "Step":
        if self.kind == "command":
            if not self.target or not self.command:
                raise ValueError("a command step needs a target and a command")
            if self.outlet_delay_s is not None:
                raise ValueError("outlet_delay_s belongs to the ups step")
        else:
            if self.target or self.command or self.resume:
                raise ValueError("the ups step takes no target, command or resume (it commands the UPS itself)")
            if self.outlet_delay_s is None:
                raise ValueError("the ups step needs outlet_delay_s (seconds before the outlets turn off)")
        if self.resume is None and self.resume_args:
            raise ValueError("resume_args without a resume command")
        return self

    @property
    def is_critical(self) -> bool:
        return self.critical or self.kind == "ups"


class ShutdownConfig(Strict):
    ups: Id = Field(description="device id of the UPS whose power facts drive the sequence")
    triggers: Triggers = Triggers()
    hold_off_s: float = Field(30.0, ge=0, le=3600,
                              description="mains back and stable this long before the point of no return: abort")
    point_of_no_return: Id | None = Field(None, description="step id; default: the ups step")
    targets: dict[Id, Target] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _sequence_is_safe(self) -> "ShutdownConfig":
        ids = [s.id for s in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique: {', '.join(dupes)}")
        ups = [i for i, s in enumerate(self.steps) if s.kind == "ups"]
        if len(ups) != 1 or ups[0] != len(self.steps) - 1:
            raise ValueError("the last step, and only the last, must be the ups step "
                             "(shutdown-and-return, so power returning cannot leave the suite off)")
        if self.point_of_no_return is not None and self.point_of_no_return not in ids:
            raise ValueError(f"point_of_no_return names no step: '{self.point_of_no_return}'")
        late = [s.id for s in self.steps[self.pnr_index:] if s.resume]
        if late:
            raise ValueError(f"resume commands on steps at or after the point of no return are never sent "
                             f"(no abort there): {', '.join(late)}")
        unknown = sorted({s.target for s in self.steps if s.target and s.target not in self.targets})
        if unknown:
            raise ValueError(f"steps name undeclared targets: {', '.join(unknown)} (add them under [shutdown.targets])")
        return self

    @property
    def pnr_index(self) -> int:
        ids = [s.id for s in self.steps]
        return ids.index(self.point_of_no_return) if self.point_of_no_return else len(ids) - 1

    @property
    def ups_step(self) -> Step:
        return self.steps[-1]

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)


def check_refs(cfg) -> Iterable[tuple[str, str]]:
    """Cross-references the section cannot see on its own (kinds.SECTION_CHECKS["shutdown"])."""
    sd = getattr(cfg, "shutdown", None)
    if sd is None:
        return
    dev = cfg.devices.get(sd.ups)
    if dev is None:
        yield "shutdown.ups", f"unknown device '{sd.ups}'"
    elif dev.kind != "ups_apc":
        yield "shutdown.ups", f"device '{sd.ups}' is a {dev.kind}, not a UPS (ups_apc)"
    elif not dev.enabled:
        yield "shutdown.ups", f"device '{sd.ups}' is disabled: the sequence would never see the power state"
