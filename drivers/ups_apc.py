"""APC Smart-UPS over Modbus RTU or Modbus TCP (APC Application Note 176).

The register map is data (``drivers/profiles/apc_smart_ups.toml``); this module
knows only the UPS *contract*: which names a profile must provide, the byte-order
self-test run on every connect, faster polling on battery, and the outlet commands
the shutdown sequencer needs, each confirmed by reading the countdown back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import Field, model_validator

from suitemon.drivers import ups_model
from suitemon.drivers.base import DriverError, ProfileError, Reading
from suitemon.drivers.config import ModbusDeviceConfig
from suitemon.drivers.modbus_link import ModbusDevice, ProfileDriver
from suitemon.drivers.profile import Point, Profile, ProfileRef, decode, load_profile

# Names the UPS rules and the shutdown sequencer rely on (drivers/ups_model.py); an APC
# profile must provide them, runtime and charge included (every Smart-UPS reports both).
REQUIRED = (*ups_model.REQUIRED, ups_model.RUNTIME_S, ups_model.CHARGE_PCT)
COUNTDOWN_CONFIRM_S = 2.0  # how long the UPS may take to show its countdown after a command


class ByteOrderError(DriverError):
    """The fixed test pattern did not read back as documented: the link swaps bytes or words."""


class CommandNotConfirmed(DriverError):
    """The UPS took a command but its read-back does not show it took effect."""


class Config(ModbusDeviceConfig):
    kind: Literal["ups_apc"]
    profile: ProfileRef = "apc_smart_ups"
    # NUT polls every 2 s; apcupsd every 1 s once on battery.
    poll_s: float = Field(2.0, ge=0.02, le=3600)
    on_battery_poll_s: float | None = Field(
        None,
        ge=0.02,
        le=3600,
        description="poll period while the UPS is on battery; default min(1 s, poll_s)",
    )
    # NUT uses 500 ms on a serial line; AN176 asks for at least 250 ms.
    timeout_s: float = Field(0.5, gt=0, le=60)
    # AN176: at least 35 ms of silence between frames (more than 3.5 characters at 9600 baud).
    frame_gap_s: float | None = Field(0.035, ge=0, le=1)
    low_runtime_s: float = Field(300, ge=0, description="on battery with this runtime or less: low battery")
    low_charge_pct: float = Field(
        25, ge=0, le=100, description="on battery with this charge or less: low battery"
    )
    # During a battery test the UPS runs on battery with mains present; an input voltage below this
    # means mains is really lost. Set it to the UPS's low transfer voltage (AN-176 register 1027).
    mains_min_v: float | None = Field(
        180.0, ge=0, le=300, description="input voltage below this is mains lost, even during a battery test"
    )

    @model_validator(mode="after")
    def _battery_poll_not_slower(self) -> Config:
        if self.on_battery_poll_s is not None and self.on_battery_poll_s > self.poll_s:
            raise ValueError("on_battery_poll_s must not be longer than poll_s (poll faster on battery)")
        return self

    @property
    def battery_poll_s(self) -> float:
        return self.on_battery_poll_s if self.on_battery_poll_s is not None else min(1.0, self.poll_s)


def _bit_names(p: Point) -> list[str]:
    return list(p.bits) if p.bits else [p.name]


def check_profile(profile: Profile) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Validate a UPS profile; return its polled point names and its self-test description.

    Raises:
        ProfileError: a required name is missing, two values would share a name, or the
            self-test expects a point outside its block.
    """
    names = tuple(profile.meta.get("poll") or (p.name for p in profile.points))
    seen: dict[str, str] = {}
    for name in names:
        try:
            p = profile.point(name)
        except KeyError as err:
            raise ProfileError(f"profile {profile.name}: polled point '{name}' is not defined") from err
        for value_name in _bit_names(p):
            if value_name in seen:
                raise ProfileError(
                    f"profile {profile.name}: value '{value_name}' comes from both "
                    f"'{seen[value_name]}' and '{name}'"
                )
            seen[value_name] = name
    missing = [n for n in REQUIRED if n not in seen]
    if missing:
        raise ProfileError(f"profile {profile.name}: a UPS profile must provide {', '.join(missing)}")
    selftest = dict(profile.meta.get("selftest") or {})
    if selftest:
        start, count = selftest.get("start"), selftest.get("count")
        if not isinstance(start, int) or not isinstance(count, int) or not 1 <= count <= 125:
            raise ProfileError(
                f"profile {profile.name}: meta.selftest needs integer start and count (1..125)"
            )
        for name in selftest.get("expect", {}):
            try:
                p = profile.point(name)
            except KeyError as err:
                raise ProfileError(
                    f"profile {profile.name}: self-test point '{name}' is not defined"
                ) from err
            if p.address < start or p.end > start + count:
                raise ProfileError(
                    f"profile {profile.name}: self-test point '{name}' lies outside "
                    f"registers {start}..{start + count - 1}"
                )
    return names, selftest


def flatten(profile: Profile, decoded: dict[str, Any]) -> dict[str, Any]:
    """Bit words become one boolean per named bit; other points keep their name."""
    values: dict[str, Any] = {}
    for name, value in decoded.items():
        p = profile.point(name)
        if p.bits:
            for bit in p.bits:
                values[bit] = bool(value[bit])
        else:
            values[name] = value
    return values


ONE_OF_DELAY_OR_GROUPS = "shutdown_return takes delay_s (the main group) or groups, not both or neither"


def _counting_down_within(delay_s: int) -> Callable[[Any], bool]:
    """A countdown read back that confirms an off delay of ``delay_s``."""
    return lambda c: c is not None and 0 <= c <= delay_s


class ApcUpsDriver(ProfileDriver):
    config: Config

    def __init__(self, device_id: str, config: Config):
        super().__init__(device_id, config, load_profile(config.profile))
        self.poll_names, self.selftest = check_profile(self.profile)
        self.outlet = dict(self.profile.meta.get("outlet") or {})
        self.on_battery = False
        # Why the UPS's values cannot be trusted (the byte-order self-test failed), or None.
        self.trust_problem: str | None = None
        self._blocks = len(self.profile.blocks(self.poll_names))
        self._commands: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "shutdown_return": self._shutdown_return,
            "cancel": self._cancel,
        }

    def poll_interval(self) -> float:
        return self.config.battery_poll_s if self.on_battery else self.config.poll_s

    @property
    def poll_deadline(self) -> float:
        return self._blocks * (self.config.timeout_s + self.config.frame_gap) + 1.0

    async def _open(self) -> None:
        # The poll loop and a sequencer command may both find the link closed: the base opens it once.
        await super()._open()
        if self.selftest:
            assert self.dev is not None
            await self._check_byte_order(self.dev)

    async def _check_byte_order(self, dev: ModbusDevice) -> None:
        start, count = self.selftest["start"], self.selftest["count"]
        words = await dev.read_table("holding", start, count)
        wrong = []
        for name, expect in self.selftest.get("expect", {}).items():
            p = self.profile.point(name)
            raw = words[p.address - start : p.end - start]
            got = decode(p, raw)
            if got != expect:
                raw_hex = " ".join(f"0x{w:04X}" for w in raw)
                wrong.append(f"register {p.address} ({name}) reads {got} ({raw_hex}), expected {expect}")
        if wrong:
            self.count("byte_order_failures")
            self.trust_problem = (
                "byte-order self-test failed: " + "; ".join(wrong) + ". The serial gateway or profile swaps "
                "bytes or the words of 32-bit values. No values are reported until this passes."
            )
            raise ByteOrderError(self.trust_problem)
        self.trust_problem = None

    async def poll(self) -> Reading:
        dev = self.dev
        if dev is None:
            raise DriverError("poll() before open()")
        decoded = await dev.read_points(self.poll_names)
        values = flatten(self.profile, decoded)
        self.on_battery = bool(values["on_battery"])
        return Reading(self.device_id, values)

    # -- commands (for the shutdown sequencer) -----------------------------------
    async def command(self, name: str, **args: Any) -> Any:
        fn = self._commands.get(name)
        if fn is None:
            return await super().command(name, **args)
        if not self.outlet:
            raise DriverError(f"profile {self.profile.name} describes no outlet commands")
        if not self.is_open or self.dev is None:
            await self.open()
        return await fn(**args)

    def _outlet_point(self, key: str) -> Point:
        return self.profile.point(self.outlet[key])

    @property
    def outlet_groups(self) -> tuple[str, ...]:
        """The outlet groups this profile can command (their target bit names)."""
        return tuple(self.outlet.get("groups") or (self.outlet.get("default_group", "main_group"),))

    def _group_points(self, group: str) -> tuple[Point, Point]:
        """(off-delay setting, turn-off countdown) of one outlet group."""
        table = self.outlet.get("groups") or {}
        if group in table:
            g = table[group]
            return self.profile.point(g["delay_point"]), self.profile.point(g["countdown_point"])
        if not table and group == self.outlet.get("default_group", "main_group"):
            return self._outlet_point("delay_point"), self._outlet_point("countdown_point")
        raise DriverError(
            f"profile {self.profile.name} has no outlet group '{group}' "
            f"(it has {', '.join(self.outlet_groups)})"
        )

    def _command_bits(self, key: str, groups: list[str]) -> dict[str, bool]:
        """The command's own bits from the profile, with the target bits of ``groups``."""
        targets = set(self.outlet_groups) | {self.outlet.get("default_group", "main_group")}
        bits = {b: True for b in self.outlet[key] if b not in targets}
        bits.update({g: True for g in groups})
        return bits

    async def _read_one(self, p: Point) -> Any:
        dev = self.dev
        if dev is None:
            raise DriverError("link closed while a command was running")
        return (await dev.read_points([p.name]))[p.name]

    async def _write(self, p: Point, value: Any) -> None:
        dev = self.dev
        if dev is None:
            raise DriverError("link closed while a command was running")
        await dev.write_point(p, value)

    async def _shutdown_return(
        self, delay_s: int | None = None, groups: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """Outlet groups off after their delays, back on when mains returns (power-cycles the load).

        ``delay_s`` alone commands the profile's default (main) group; ``groups`` maps each
        group to command (its target bit name) to its off delay. All groups go in one command
        word, so none can be left out by a failure between two writes.
        """
        if groups is None:
            if delay_s is None:
                raise DriverError(ONE_OF_DELAY_OR_GROUPS)
            groups = {self.outlet.get("default_group", "main_group"): delay_s}
        elif delay_s is not None:
            raise DriverError(ONE_OF_DELAY_OR_GROUPS)
        if not groups:
            raise DriverError("shutdown_return needs at least one outlet group")
        points = {}
        for group, delay in groups.items():
            if not isinstance(delay, int) or isinstance(delay, bool) or not 1 <= delay <= 32767:
                raise DriverError(
                    f"shutdown delay of outlet group '{group}' must be 1..32767 s, not {delay!r}"
                )
            points[group] = self._group_points(group)
        for group, delay in groups.items():
            delay_p = points[group][0]
            await self._write(delay_p, delay)
            got = await self._read_one(delay_p)
            if got != delay:
                raise CommandNotConfirmed(
                    f"shutdown delay register {delay_p.address} ({group}) reads {got} after writing {delay}"
                )
        bits = self._command_bits("shutdown_return", list(groups))
        await self._write(self._outlet_point("command_point"), bits)
        result = {}
        for group, delay in groups.items():
            countdown = await self._await_countdown(points[group][1], _counting_down_within(delay))
            result[group] = {"delay_s": delay, "countdown_s": countdown}
        first = next(iter(result.values()))
        return {
            "countdown_s": first["countdown_s"],
            "delay_s": first["delay_s"],
            "groups": result,
            "command_bits": sorted(bits),
        }

    async def _cancel(self, groups: list[str] | None = None) -> dict[str, Any]:
        groups = list(groups) if groups else [self.outlet.get("default_group", "main_group")]
        points = {g: self._group_points(g) for g in groups}
        await self._write(self._outlet_point("command_point"), self._command_bits("cancel", groups))
        result = {
            g: await self._await_countdown(points[g][1], lambda c: c is not None and c < 0) for g in groups
        }
        return {"countdown_s": result[groups[0]], "groups": result}

    async def _await_countdown(self, p: Point, ok: Callable[[Any], bool]) -> Any:
        deadline = time.monotonic() + COUNTDOWN_CONFIRM_S
        while True:
            value = await self._read_one(p)
            if ok(value):
                return value
            if time.monotonic() > deadline:
                raise CommandNotConfirmed(
                    f"UPS countdown (register {p.address}) reads {value} after the command: not confirmed"
                )
            await asyncio.sleep(0.1)
