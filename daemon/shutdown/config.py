"""The ``[shutdown]`` config section: triggers, targets and the ordered steps.

Validation refuses what would make the sequence unsafe rather than fixing it: the
UPS command must be the last step (so power returning can never leave the suite off
for good), step ids are unique, every target is declared, and the point of no
return names a real step. With outlet groups, the group that feeds the patient
supervision (call bells, area monitors, this PC and its switch) must switch off
last, and the main group (which feeds the switched groups) no earlier than any of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from suitemon.daemon import kinds
from suitemon.drivers.config import Id, Strict

COMMAND_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# AN-176 outlet command target bits; the main group feeds the switched groups.
MAIN_GROUP = "main_group"
UPS_GROUPS = (MAIN_GROUP, "switched_group_0", "switched_group_1", "switched_group_2")


def _no_true(v: Any) -> Any:
    if v is True:
        raise ValueError("give a number, or false to turn this trigger off")
    return v


def Off(number: Any) -> Any:
    """A trigger threshold that ``false`` turns off (TOML has no null)."""
    return Annotated[Literal[False] | number, BeforeValidator(_no_true)]


class Triggers(Strict):
    on_battery_s: Off(Annotated[float, Field(gt=0, le=86400)]) = Field(
        60.0, description="on battery this long (a self-test does not count); false: off"
    )
    runtime_below_s: Off(Annotated[float, Field(ge=0)]) = Field(
        300.0, description="on battery with runtime <= this; false: off"
    )
    charge_below_pct: Off(Annotated[float, Field(ge=0, le=100)]) = Field(
        False, description="on battery with charge <= this; false: off"
    )
    shutdown_imminent: bool = Field(True, description="the UPS signals shutdown imminent")
    comm_lost_on_battery: bool = Field(True, description="UPS unreachable while it was on battery (as NUT)")
    debounce_s: float = Field(
        5.0,
        ge=0,
        le=600,
        description="each condition (but on_battery_s) must hold this long; apcupsd uses 5 s",
    )
    manual: bool = Field(True, description="allow the manual 'shutdown' command (needs a confirmation)")


class Target(Strict):
    """Someone who takes shutdown commands on suitemon/<site>/shutdown/cmd/<target id>."""

    name: str | None = None
    sim: dict[str, Any] = Field(
        default_factory=dict, description="options for the shutdown-target simulator; ignored by the daemon"
    )


class OutletGroup(Strict):
    """A UPS outlet group and what it feeds; the ups step switches it off after ``off_delay_s``."""

    ups_group: Literal[UPS_GROUPS] = Field(description="the UPS's group (AN-176 outlet command target bit)")
    name: str | None = None
    feeds: list[str] = Field(default_factory=list, description="the equipment on it (shown by the dry run)")
    off_delay_s: int = Field(ge=1, le=32767, description="seconds from the UPS command to this group off")
    supervision: bool = Field(
        False, description="feeds what supervises injected patients: must switch off last"
    )


class Step(Strict):
    id: Id
    kind: Literal["command", "occupancy", "ups"] = "command"
    description: str | None = None
    target: Id | None = None
    area: Id | None = Field(None, description="occupancy step: hold and announce while this area is occupied")
    command: str | None = Field(None, pattern=COMMAND_NAME)
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(gt=0, le=3600, description="wait this long for the target's acknowledgement")
    on_timeout: Literal["proceed", "hold"] = Field(
        "proceed", description="proceed to the next step, or hold here until acknowledged or released"
    )
    critical: bool = Field(False, description="never skipped when the remaining runtime runs short")
    resume: str | None = Field(
        None, pattern=COMMAND_NAME, description="sent to the target if the sequence aborts"
    )
    resume_args: dict[str, Any] = Field(default_factory=dict)
    outlet_delay_s: int | None = Field(
        None, ge=1, le=32767, description="ups step: seconds before the UPS turns its main group off"
    )
    outlet_groups: list[Id] | None = Field(
        None,
        description="ups step: the outlet groups to command "
        "(default: every group in [shutdown.outlet_groups])",
    )

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Step:
        if self.kind != "ups" and (self.outlet_delay_s is not None or self.outlet_groups is not None):
            raise ValueError("outlet_delay_s and outlet_groups belong to the ups step")
        if self.kind != "occupancy" and self.area is not None:
            raise ValueError("area belongs to the occupancy step")
        if self.kind == "command":
            if not self.target or not self.command:
                raise ValueError("a command step needs a target and a command")
        elif self.kind == "occupancy":
            if self.target or self.command or self.resume:
                raise ValueError("the occupancy step takes no target, command or resume (it watches an area)")
            if self.area is None:
                raise ValueError("the occupancy step needs the area to watch (e.g. the scanner room)")
        else:
            if self.target or self.command or self.resume:
                raise ValueError(
                    "the ups step takes no target, command or resume (it commands the UPS itself)"
                )
            if self.outlet_delay_s is not None and self.outlet_groups is not None:
                raise ValueError(
                    "give the ups step outlet_delay_s (main group only) or outlet_groups, not both"
                )
        if self.resume is None and self.resume_args:
            raise ValueError("resume_args without a resume command")
        return self

    @property
    def is_critical(self) -> bool:
        return self.critical or self.kind == "ups"


class ShutdownConfig(Strict):
    ups: Id = Field(description="device id of the UPS whose power facts drive the sequence")
    triggers: Triggers = Triggers()
    hold_off_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="mains back and stable this long before the point of no return: abort",
    )
    point_of_no_return: Id | None = Field(None, description="step id; default: the ups step")
    targets: dict[Id, Target] = Field(default_factory=dict)
    outlet_groups: dict[Id, OutletGroup] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _sequence_is_safe(self) -> ShutdownConfig:
        ids = [s.id for s in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique: {', '.join(dupes)}")
        ups = [i for i, s in enumerate(self.steps) if s.kind == "ups"]
        if len(ups) != 1 or ups[0] != len(self.steps) - 1:
            raise ValueError(
                "the last step, and only the last, must be the ups step "
                "(shutdown-and-return, so power returning cannot leave the suite off)"
            )
        if self.point_of_no_return is not None and self.point_of_no_return not in ids:
            raise ValueError(f"point_of_no_return names no step: '{self.point_of_no_return}'")
        late = [s.id for s in self.steps[self.pnr_index :] if s.resume]
        if late:
            raise ValueError(
                f"resume commands on steps at or after the point of no return are never sent "
                f"(no abort there): {', '.join(late)}"
            )
        unknown = sorted({s.target for s in self.steps if s.target and s.target not in self.targets})
        if unknown:
            raise ValueError(
                f"steps name undeclared targets: {', '.join(unknown)} (add them under [shutdown.targets])"
            )
        self._check_outlet_groups()
        return self

    def _check_outlet_groups(self) -> None:
        ups = self.steps[-1]
        groups = self.outlet_groups
        if not groups:
            if ups.outlet_groups is not None:
                raise ValueError(
                    "the ups step names outlet_groups but [shutdown.outlet_groups] declares none"
                )
            if ups.outlet_delay_s is None:
                raise ValueError(
                    "the ups step needs outlet_delay_s (seconds before the outlets turn off), "
                    "or declare [shutdown.outlet_groups]"
                )
            return
        if ups.outlet_delay_s is not None:
            raise ValueError(
                "with [shutdown.outlet_groups] the delays are the groups' off_delay_s: "
                "drop outlet_delay_s from the ups step"
            )
        seen: dict[str, str] = {}
        for gid, g in groups.items():
            if g.ups_group in seen:
                raise ValueError(
                    f"outlet groups '{seen[g.ups_group]}' and '{gid}' are the same UPS group ({g.ups_group})"
                )
            seen[g.ups_group] = gid
        if not any(g.supervision for g in groups.values()):
            raise ValueError(
                "no outlet group has supervision = true: say which group feeds the call bells, "
                "area monitors, this PC and its switch (it must switch off last)"
            )
        names = ups.outlet_groups if ups.outlet_groups is not None else list(groups)
        unknown = [n for n in names if n not in groups]
        if unknown or not names:
            raise ValueError(
                f"the ups step names undeclared outlet groups: {', '.join(unknown)}"
                if unknown
                else "the ups step commands no outlet group"
            )
        commanded = {n: groups[n] for n in names}
        main = next((n for n, g in commanded.items() if g.ups_group == MAIN_GROUP), None)
        if main is not None:
            early = [n for n, g in commanded.items() if g.off_delay_s > commanded[main].off_delay_s]
            if early:
                raise ValueError(
                    f"outlet group '{main}' is the UPS's main group, which feeds the switched "
                    f"groups and turns them off with it: {', '.join(early)} would go off at "
                    f"{commanded[main].off_delay_s} s, not at their own off_delay_s"
                )
        sup = [g.off_delay_s for g in commanded.values() if g.supervision]
        later = [n for n, g in commanded.items() if not g.supervision and sup and g.off_delay_s >= min(sup)]
        if later:
            raise ValueError(
                f"the patient-supervision group must switch off last: {', '.join(later)} "
                f"would switch off at or after it ({min(sup)} s)"
            )

    def ups_groups(self) -> dict[str, OutletGroup]:
        """The outlet groups the ups step commands, by id (empty: the main group, legacy)."""
        names = (
            self.ups_step.outlet_groups
            if self.ups_step.outlet_groups is not None
            else list(self.outlet_groups)
        )
        return {n: self.outlet_groups[n] for n in names}

    def ups_off_after_s(self) -> float:
        """Seconds from the UPS command until the load the steps protect is off (the time budget's
        share of the ups step): the longest delay of the groups that do not feed patient supervision,
        which run on as long as the battery allows."""
        groups = self.ups_groups()
        if not groups:
            return float(self.ups_step.outlet_delay_s or 0)
        load = [g.off_delay_s for g in groups.values() if not g.supervision]
        return float(max(load) if load else min(g.off_delay_s for g in groups.values()))

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
    """Cross-references the section cannot see on its own (the `check` of the "shutdown" row in daemon/kinds.py)."""
    sd = getattr(cfg, "shutdown", None)
    if sd is None:
        return
    dev = cfg.devices.get(sd.ups)
    if dev is None:
        yield "shutdown.ups", f"unknown device '{sd.ups}'"
    elif not is_ups_kind(dev.kind):
        yield (
            "shutdown.ups",
            (
                f"device '{sd.ups}' is a {dev.kind}, not a UPS "
                f"({', '.join(sorted(k for k in kinds.KINDS if is_ups_kind(k)))})"
            ),
        )
    elif not dev.enabled:
        yield "shutdown.ups", f"device '{sd.ups}' is disabled: the sequence would never see the power state"
    else:
        yield from _groups_in_profile(sd, dev)
    for i, s in enumerate(sd.steps):
        if s.kind == "occupancy" and s.area not in cfg.areas:
            yield f"shutdown.steps.{i}.area", f"unknown area '{s.area}'"


is_ups_kind = kinds.is_ups_kind


def _groups_in_profile(sd: ShutdownConfig, dev) -> Iterable[tuple[str, str]]:
    """The outlet groups the ups step commands must exist in the UPS's profile."""
    if getattr(dev, "profile", None) is None:
        # NUT and SNMP UPSs are commanded as a whole: only the main group exists.
        for gid, g in sd.ups_groups().items():
            if g.ups_group != MAIN_GROUP:
                yield (
                    f"shutdown.outlet_groups.{gid}.ups_group",
                    f"UPS '{sd.ups}' ({dev.kind}) is commanded as a whole; it has no outlet group "
                    f"'{g.ups_group}' (only {MAIN_GROUP})",
                )
        return
    from suitemon.drivers.base import ProfileError
    from suitemon.drivers.profile import load_profile

    try:
        outlet = load_profile(dev.profile).meta.get("outlet") or {}
    except (ProfileError, OSError, ValueError):
        return  # the device's own checks report a profile that does not load
    has = set(outlet.get("groups") or ()) or {outlet.get("default_group", MAIN_GROUP)}
    for gid, g in sd.ups_groups().items():
        if g.ups_group not in has:
            yield (
                f"shutdown.outlet_groups.{gid}.ups_group",
                f"UPS '{sd.ups}' (profile {dev.profile}) has no outlet group '{g.ups_group}' "
                f"(it has {', '.join(sorted(has))})",
            )
