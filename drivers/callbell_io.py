"""Call-bell driver: a Modbus digital I/O module wired to the uptake rooms' buttons and lamps.

Per room, up to three inputs (call, emergency / pull cord, cancel-in-room; FC 02) and
two coils (over-door lamp, in-room reassurance lamp; FC 05 / 15). Which input and coil
is which is the site's wiring (device config ``rooms``); what the module can do
(counts, base addresses, input latching) is its profile (``drivers/profiles/dio16*.toml``).

A poll writes pending lamp changes, reads every mapped input in one FC 02 request, and
reads the lamp coils back (FC 01) after a write and every ``coil_check_s`` otherwise.
The reading carries input levels and the *read-back* lamp states, never the wanted
ones: the rules compare the two, so a lamp that does not light is an alarm, not an assumption.
The driver knows nothing of alarms; what the lamps should show comes from
``set_outputs`` (the call-bell rules derive it from the open alarms).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from suitemon.drivers.base import Driver, ProfileError, Reading
from suitemon.drivers.config import Id, ModbusDeviceConfig, Strict
from suitemon.drivers.io_module import IoProfile, load_io_profile
from suitemon.drivers.modbus_link import ModbusDevice
from suitemon.drivers.profile import Profile

BUTTONS = ("call", "emergency", "cancel")
LAMPS = ("door_lamp", "reassure_lamp")


class RoomIO(Strict):
    """One room's wiring: input and coil numbers on the module (0-based, as printed on it)."""

    call: int | None = Field(None, ge=0, description="call button input")
    emergency: int | None = Field(
        None, ge=0, description="emergency / deterioration button or pull cord input"
    )
    cancel: int | None = Field(None, ge=0, description="cancel/reset-in-room button input")
    door_lamp: int | None = Field(None, ge=0, description="over-door lamp coil")
    reassure_lamp: int | None = Field(None, ge=0, description="in-room reassurance lamp coil")

    def inputs(self) -> dict[str, int]:
        return {b: getattr(self, b) for b in BUTTONS if getattr(self, b) is not None}

    def lamps(self) -> dict[str, int]:
        return {lamp: getattr(self, lamp) for lamp in LAMPS if getattr(self, lamp) is not None}


class Config(ModbusDeviceConfig):
    kind: Literal["callbell_io"]
    profile: str = Field("dio16_latch", description="I/O module profile name or path")
    poll_s: float = Field(0.1, ge=0.02, le=10, description="50 ms is supported")
    timeout_s: float = Field(0.2, gt=0, le=5)
    rooms: dict[Id, RoomIO] = Field(min_length=1, description="room (area id) -> its inputs and coils")
    call_type: str = Field("bells.call", description="alarm type of a call (MEDIUM clinical, latching)")
    emergency_type: str = Field(
        "bells.emergency", description="alarm type of an emergency (HIGH, emergency = true)"
    )
    coil_check_s: float = Field(1.0, gt=0, le=60, description="read the lamp coils back at least this often")
    lamp_confirm_s: float = Field(1.0, gt=0, le=60, description="a lamp not following this long is a fault")
    stuck_after_s: float = Field(120.0, gt=0, description="an input held this long is reported as stuck")
    test_interval_s: float = Field(7 * 86400.0, gt=0, description="bell test due this often (weekly)")
    test_window_s: float = Field(900.0, gt=0, le=86400, description="test mode ends by itself after this")
    test_lamp_s: float = Field(2.0, ge=0, le=60, description="lamps show this long after a test press")

    @field_validator("profile")
    @classmethod
    def _profile_loads(cls, v: str) -> str:
        try:
            load_io_profile(v)
        except ProfileError as err:
            raise ValueError(str(err)) from err
        return v

    @property
    def io_profile(self) -> IoProfile:
        return load_io_profile(self.profile)


def _span(addresses: list[int]) -> tuple[int, int]:
    if not addresses:
        return 0, 0
    return min(addresses), max(addresses) - min(addresses) + 1


class CallBellDriver(Driver):
    config: Config

    def __init__(self, device_id: str, config: Config):
        super().__init__(device_id, config)
        self.io = config.io_profile
        self.latching = self.io.latching
        ins = [self.io.input_base + n for r in config.rooms.values() for n in r.inputs().values()]
        coils = [self.io.coil_base + n for r in config.rooms.values() for n in r.lamps().values()]
        self.in_start, self.in_count = _span(ins)
        self.coil_start, self.coil_count = _span(coils)
        # (room, [(button, index into the FC 02 answer)], [(lamp, coil address)]), computed once:
        # a 50 ms poll builds its reading from this table without looking at the config.
        self._layout = [
            (
                room,
                [(b, self.io.input_base + n - self.in_start) for b, n in r.inputs().items()],
                [(lamp, self.io.coil_base + n) for lamp, n in r.lamps().items()],
            )
            for room, r in config.rooms.items()
        ]
        self._coil_of = {(room, lamp): addr for room, _, lamps in self._layout for lamp, addr in lamps}
        self._desired: dict[int, bool] = {}
        self._coils: dict[int, bool] | None = None  # last read-back
        self._coils_at: float | None = None
        self._coils_gen = 0  # bumped when the read-back changes
        self._out_dirty = False  # some wanted coil differs from its read-back
        self._written: dict[int, tuple[bool, float]] = {}
        # The last reading's values, reused while nothing changed: a 50 ms poll of an idle
        # module then costs one comparison here and an identity check in the rules.
        self._last_key: tuple[tuple[int, ...], int] | None = None  # (input bits, coil generation)
        self._last_values: dict[str, Any] = {}
        self._meta = {"latching": self.latching}
        self.dev: ModbusDevice | None = None

    # -- outputs -----------------------------------------------------------
    def set_outputs(self, desired: Mapping[str, Any]) -> None:
        """desired: {room: {"door_lamp": bool, "reassure_lamp": bool}}; unknown lamps are ignored."""
        for room, lamps in desired.items():
            for lamp, on in lamps.items():
                addr = self._coil_of.get((room, lamp))
                if addr is not None:
                    self._desired[addr] = bool(on)
        self._check_dirty()

    def _check_dirty(self) -> None:
        coils = self._coils
        self._out_dirty = coils is None or any(coils.get(a) != v for a, v in self._desired.items())

    def _pending_writes(self, now: float) -> list[int]:
        if self._coils is None:
            return []
        out = []
        for addr, want in self._desired.items():
            if self._coils.get(addr) == want:
                continue
            last = self._written.get(addr)
            # A coil that did not take a write is retried once per check period, not every poll.
            if last is None or last[0] != want or now - last[1] >= self.config.coil_check_s:
                out.append(addr)
        return sorted(out)

    async def _write_outputs(self, now: float) -> bool:
        addrs = self._pending_writes(now)
        if not addrs:
            return False
        assert self.dev is not None
        run: list[int] = []
        pending: list[int | None] = [*addrs, None]  # None flushes the last run
        for addr in pending:
            if run and (addr is None or addr != run[-1] + 1):
                values = [self._desired[a] for a in run]
                if len(run) == 1:
                    await self.dev.bus.request("write_coil", run[0], values[0], unit=self.config.unit)
                else:
                    await self.dev.write_coils(run[0], values)
                for a, v in zip(run, values, strict=True):
                    self._written[a] = (v, now)
                self.count("coil_writes", len(run))
                run = []
            if addr is not None:
                run.append(addr)
        return True

    async def _read_coils(self) -> None:
        assert self.dev is not None
        bits = await self.dev.read_table("coil", self.coil_start, self.coil_count)
        coils = {self.coil_start + i: bool(b) for i, b in enumerate(bits)}
        if coils != self._coils:
            self._coils = coils
            self._coils_gen += 1
        self._coils_at = time.monotonic()
        self._check_dirty()

    # -- driver interface ----------------------------------------------------
    async def _open(self) -> None:
        if self.dev is None:
            self.dev = ModbusDevice(self.config, Profile(name=self.io.name, points=()))
        await self.dev.bus.ensure_connected()

    async def poll(self) -> Reading:
        assert self.dev is not None, "open() first"
        now = time.monotonic()
        wrote = False
        if self.coil_count:
            if self._coils is None:
                await self._read_coils()  # know the lamps before changing them
            if self._out_dirty:
                wrote = await self._write_outputs(now)
        bits = await self.dev.read_table("discrete", self.in_start, self.in_count)
        if self.coil_count and (wrote or now - (self._coils_at or 0.0) >= self.config.coil_check_s):
            await self._read_coils()
        key = (tuple(bits), self._coils_gen)
        if key != self._last_key:
            coils = self._coils or {}
            rooms = {}
            for room, inputs, lamps in self._layout:
                d: dict[str, bool | None] = {b: bool(bits[i]) for b, i in inputs}
                for lamp, addr in lamps:
                    d[lamp] = coils.get(addr)
                rooms[room] = d
            self._last_key, self._last_values = key, {"rooms": rooms}
        return Reading(self.device_id, self._last_values, meta=self._meta)

    async def _close(self) -> None:
        dev, self.dev = self.dev, None
        self._coils = self._coils_at = None  # the module may have restarted: read the lamps again
        self._last_key = None
        self._out_dirty = bool(self._desired)
        if dev is not None:
            await dev.close()
