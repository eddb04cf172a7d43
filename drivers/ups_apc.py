"""APC Smart-UPS over Modbus RTU or Modbus TCP (APC Application Note 176).

The register map is data (``drivers/profiles/apc_smart_ups.toml``); this module
knows only the UPS *contract*: which names a profile must provide, the byte-order
self-test run on every connect, faster polling on battery, and the outlet commands
the shutdown sequencer needs, each confirmed by reading the countdown back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Literal

from pydantic import Field, model_validator

from suitemon.drivers.base import Driver, DriverError, ProfileError, Reading
from suitemon.drivers.config import ModbusDeviceConfig
from suitemon.drivers.modbus_link import ModbusDevice
from suitemon.drivers.profile import Point, Profile, decode, load_profile

# Names the UPS rules and the shutdown sequencer rely on; a profile must provide them.
REQUIRED = ("on_battery", "shutdown_imminent", "runtime_s", "charge_pct")
COUNTDOWN_CONFIRM_S = 2.0  # how long the UPS may take to show its countdown after a command


class ByteOrderError(DriverError):
    """The fixed test pattern did not read back as documented: the link swaps bytes or words."""


class CommandNotConfirmed(DriverError):
    """The UPS took a command but its read-back does not show it took effect."""


class Config(ModbusDeviceConfig):
    kind: Literal["ups_apc"]
    profile: str = "apc_smart_ups"
    # NUT polls every 2 s; apcupsd every 1 s once on battery.
    poll_s: float = Field(2.0, ge=0.02, le=3600)
    on_battery_poll_s: float | None = Field(
        None, ge=0.02, le=3600, description="poll period while the UPS is on battery; default min(1 s, poll_s)")
    # NUT uses 500 ms on a serial line; AN176 asks for at least 250 ms.
    timeout_s: float = Field(0.5, gt=0, le=60)
    # AN176: at least 35 ms of silence between frames (more than 3.5 characters at 9600 baud).
    frame_gap_s: float | None = Field(0.035, ge=0, le=1)
    low_runtime_s: float = Field(300, ge=0, description="on battery with this runtime or less: low battery")
    low_charge_pct: float = Field(25, ge=0, le=100, description="on battery with this charge or less: low battery")

    @model_validator(mode="after")
    def _battery_poll_not_slower(self) -> "Config":
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
        except KeyError:
            raise ProfileError(f"profile {profile.name}: polled point '{name}' is not defined") from None
        for value_name in _bit_names(p):
            if value_name in seen:
                raise ProfileError(f"profile {profile.name}: value '{value_name}' comes from both "
                                   f"'{seen[value_name]}' and '{name}'")
            seen[value_name] = name
    missing = [n for n in REQUIRED if n not in seen]
    if missing:
        raise ProfileError(f"profile {profile.name}: a UPS profile must provide {', '.join(missing)}")
    selftest = dict(profile.meta.get("selftest") or {})
    if selftest:
        start, count = selftest.get("start"), selftest.get("count")
        if not isinstance(start, int) or not isinstance(count, int) or not 1 <= count <= 125:
            raise ProfileError(f"profile {profile.name}: meta.selftest needs integer start and count (1..125)")
        for name in selftest.get("expect", {}):
            try:
                p = profile.point(name)
            except KeyError:
                raise ProfileError(f"profile {profile.name}: self-test point '{name}' is not defined") from None
            if p.address < start or p.end > start + count:
                raise ProfileError(f"profile {profile.name}: self-test point '{name}' lies outside "
                                   f"registers {start}..{start + count - 1}")
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


class ApcUpsDriver(Driver):
    def __init__(self, device_id: str, config: Config):
        super().__init__(device_id, config)
        self.profile = load_profile(config.profile)
        self.poll_names, self.selftest = check_profile(self.profile)
        self.outlet = dict(self.profile.meta.get("outlet") or {})
        self.dev: ModbusDevice | None = None
        self._open_lock: asyncio.Lock | None = None
        self.on_battery = False
        blocks = len(self.profile.blocks(self.poll_names))
        self.poll_deadline = blocks * (config.timeout_s + config.frame_gap) + 1.0
        self._commands: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "shutdown_return": self._shutdown_return,
            "cancel": self._cancel,
        }

    def poll_interval(self) -> float:
        return self.config.battery_poll_s if self.on_battery else self.config.poll_s

    async def open(self) -> None:
        # The poll loop and a sequencer command may both find the link closed: open it once.
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self.is_open and self.dev is not None:
                return
            if self.dev is None:
                self.dev = ModbusDevice(self.config, self.profile)
            try:
                await self.dev.bus.ensure_connected()
                if self.selftest:
                    await self._check_byte_order(self.dev)
            except BaseException:
                await self.close()
                raise
            self.is_open = True

    async def _check_byte_order(self, dev: ModbusDevice) -> None:
        start, count = self.selftest["start"], self.selftest["count"]
        words = await dev.read_table("holding", start, count)
        for name, expect in self.selftest.get("expect", {}).items():
            p = self.profile.point(name)
            raw = words[p.address - start:p.end - start]
            got = decode(p, raw)
            if got != expect:
                self.count("byte_order_failures")
                raw_hex = " ".join(f"0x{w:04X}" for w in raw)
                raise ByteOrderError(
                    f"byte-order self-test failed: register {p.address} ({name}) reads {got} ({raw_hex}), "
                    f"expected {expect}; the serial gateway or profile swaps bytes or words. "
                    "No values are reported until this passes.")

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

    async def _shutdown_return(self, delay_s: int) -> dict[str, Any]:
        """Main outlet group off after ``delay_s``, back on when mains returns (power-cycles the load)."""
        if not isinstance(delay_s, int) or not 1 <= delay_s <= 32767:
            raise DriverError(f"shutdown delay must be 1..32767 s, not {delay_s!r}")
        delay_p = self._outlet_point("delay_point")
        await self._write(delay_p, delay_s)
        got = await self._read_one(delay_p)
        if got != delay_s:
            raise CommandNotConfirmed(f"shutdown delay register {delay_p.address} reads {got} after writing {delay_s}")
        cmd_p = self._outlet_point("command_point")
        bits = {b: True for b in self.outlet["shutdown_return"]}
        await self._write(cmd_p, bits)
        countdown = await self._await_countdown(lambda c: c is not None and 0 <= c <= delay_s)
        return {"countdown_s": countdown, "delay_s": delay_s, "command_bits": sorted(bits)}

    async def _cancel(self) -> dict[str, Any]:
        cmd_p = self._outlet_point("command_point")
        await self._write(cmd_p, {b: True for b in self.outlet["cancel"]})
        countdown = await self._await_countdown(lambda c: c is not None and c < 0)
        return {"countdown_s": countdown}

    async def _await_countdown(self, ok: Callable[[Any], bool]) -> Any:
        p = self._outlet_point("countdown_point")
        deadline = time.monotonic() + COUNTDOWN_CONFIRM_S
        while True:
            value = await self._read_one(p)
            if ok(value):
                return value
            if time.monotonic() > deadline:
                raise CommandNotConfirmed(
                    f"UPS countdown (register {p.address}) reads {value} after the command: not confirmed")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        dev, self.dev = self.dev, None
        self.is_open = False
        if dev is not None:
            await dev.close()
