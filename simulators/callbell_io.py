"""Simulator of the call-bell I/O module: buttons people press, lamps the daemon drives.

The module is laid out by its I/O profile (input/coil counts, base addresses, latching)
and the rooms by the device config, so ``press room=uptake3 button=emergency`` flips the
input the daemon reads as that room's emergency button. With a latching profile a
rising edge reads as 1 at least once, however short the press: exactly what the driver
counts on. Faults on top of the inherited ones (silent, delay, corrupt CRC, unplug):
a stuck input and a jammed lamp coil (accepts writes, reads back its stuck value).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from suitemon.drivers.io_module import IoProfile, load_io_profile
from suitemon.simulators.base import ModbusSimulator, SimError, Simulator
from suitemon.simulators.modbus_server import ILLEGAL_ADDRESS, Faults, ModbusError, Unit


class IoStore:
    """Discrete inputs (level, latch, stuck) and coils (value, jammed) of one module."""

    def __init__(self, io: IoProfile):
        self.io = io
        self.level = [0] * io.inputs
        self.latched = [0] * io.inputs
        self.stuck: dict[int, int] = {}
        self.coils = [0] * io.coils
        self.jammed: dict[int, int] = {}
        self.input_reads = 0
        self.coil_writes = 0

    def _index(self, base: int, size: int, address: int, count: int) -> int:
        i0 = address - base
        if i0 < 0 or count < 1 or i0 + count > size:
            raise ModbusError(ILLEGAL_ADDRESS)
        return i0

    def read(self, table: str, address: int, count: int) -> list[int]:
        if table == "discrete":
            i0 = self._index(self.io.input_base, self.io.inputs, address, count)
            out = [self.stuck.get(i, self.level[i] | self.latched[i]) for i in range(i0, i0 + count)]
            if self.io.latching:
                for i in range(i0, i0 + count):
                    self.latched[i] = 0  # the master has seen the edge
            self.input_reads += 1
            return out
        if table == "coil":
            i0 = self._index(self.io.coil_base, self.io.coils, address, count)
            return [self.jammed.get(i, self.coils[i]) for i in range(i0, i0 + count)]
        raise ModbusError(ILLEGAL_ADDRESS)

    def write(self, table: str, address: int, values: list[int]) -> None:
        if table != "coil":
            raise ModbusError(ILLEGAL_ADDRESS)
        i0 = self._index(self.io.coil_base, self.io.coils, address, len(values))
        for i, v in enumerate(values, start=i0):
            self.coils[i] = 1 if v else 0  # a jammed coil takes the write but does not follow it
        self.coil_writes += 1

    def set_input(self, i: int, level: bool) -> None:
        if level and not self.level[i] and self.io.latching:
            self.latched[i] = 1
        self.level[i] = 1 if level else 0


class CallBellSimulator(ModbusSimulator):
    def __init__(self, device_id: str, cfg: Any):
        # Not ModbusSimulator.__init__: this module is laid out by an I/O profile, not a register profile.
        Simulator.__init__(self, device_id, cfg)
        self.profile = None
        self.io = load_io_profile(cfg.profile)
        self.store = IoStore(self.io)  # type: ignore[assignment]
        self.faults = Faults()
        self.unit = Unit(self.store, self.faults)
        self.endpoint = None
        self._releases: dict[int, asyncio.TimerHandle] = {}
        self.actions.update(
            {
                "fault": self.set_fault,
                "clear": self.clear_faults,
                "unplug": self.unplug,
                "plug": self.plug,
                "noise": self.noise,
                "press": self.press,
                "hold": self.hold,
                "release": self.release,
                "stick": self.stick,
                "unstick": self.unstick,
                "jam_lamp": self.jam_lamp,
                "unjam_lamp": self.unjam_lamp,
                "get": self.get,
                "lamps": self.lamps,
            }
        )

    # -- addressing ----------------------------------------------------------
    def _input(self, room: str | None, button: str, input: int | None) -> int:
        if input is not None:
            if not isinstance(input, int) or not 0 <= input < self.io.inputs:
                raise SimError(f"{self.device_id}: input must be 0..{self.io.inputs - 1}")
            return input
        r = self.cfg.rooms.get(room) if room else None
        if r is None:
            raise SimError(f"{self.device_id}: no room '{room}'; have: {', '.join(self.cfg.rooms)}")
        n = r.inputs().get(button)
        if n is None:
            raise SimError(
                f"{self.device_id}: room '{room}' has no '{button}' input; has: {', '.join(r.inputs())}"
            )
        return n

    def _coil(self, room: str | None, lamp: str, coil: int | None) -> int:
        if coil is not None:
            if not isinstance(coil, int) or not 0 <= coil < self.io.coils:
                raise SimError(f"{self.device_id}: coil must be 0..{self.io.coils - 1}")
            return coil
        r = self.cfg.rooms.get(room) if room else None
        n = r.lamps().get(lamp) if r is not None else None
        if n is None:
            raise SimError(f"{self.device_id}: no lamp '{lamp}' in room '{room}'")
        return n

    # -- people --------------------------------------------------------------
    def _cancel_release(self, i: int) -> None:
        h = self._releases.pop(i, None)
        if h is not None:
            h.cancel()

    def press(
        self, room: str | None = None, button: str = "call", input: int | None = None, hold_s: float = 0.2
    ) -> dict[str, Any]:
        """A press of hold_s seconds (as short as you like: a latching module still shows it)."""
        if not isinstance(hold_s, (int, float)) or not 0 <= hold_s <= 3600:
            raise SimError(f"{self.device_id}: hold_s must be 0..3600 s")
        i = self._input(room, button, input)
        self._cancel_release(i)
        self.store.set_input(i, True)
        pressed_at = time.time()
        self._releases[i] = asyncio.get_running_loop().call_later(hold_s, self._release_now, i)
        return {"input": i, "pressed_at": pressed_at, "hold_s": hold_s}

    def hold(self, room: str | None = None, button: str = "call", input: int | None = None) -> dict[str, Any]:
        """Press and keep pressed until ``release``."""
        i = self._input(room, button, input)
        self._cancel_release(i)
        self.store.set_input(i, True)
        return {"input": i, "pressed_at": time.time()}

    def _release_now(self, i: int) -> None:
        self._releases.pop(i, None)
        self.store.set_input(i, False)

    def release(
        self, room: str | None = None, button: str = "call", input: int | None = None
    ) -> dict[str, Any]:
        i = self._input(room, button, input)
        self._cancel_release(i)
        self.store.set_input(i, False)
        return {"input": i, "released_at": time.time()}

    # -- faults --------------------------------------------------------------
    def stick(
        self, room: str | None = None, button: str = "call", input: int | None = None, level: bool = True
    ) -> dict[str, Any]:
        """The input reads ``level`` whatever anyone does (a jammed button, a shorted cable)."""
        i = self._input(room, button, input)
        self.store.stuck[i] = 1 if level else 0
        return {"input": i, "stuck": bool(level)}

    def unstick(
        self, room: str | None = None, button: str = "call", input: int | None = None
    ) -> dict[str, Any]:
        i = self._input(room, button, input)
        self.store.stuck.pop(i, None)
        return {"input": i, "stuck": None}

    def jam_lamp(
        self, room: str | None = None, lamp: str = "door_lamp", coil: int | None = None, value: bool = False
    ) -> dict[str, Any]:
        """The coil answers writes but reads back ``value`` (failed relay or lamp driver)."""
        c = self._coil(room, lamp, coil)
        self.store.jammed[c] = 1 if value else 0
        return {"coil": c, "jammed": bool(value)}

    def unjam_lamp(self, room: str | None = None, lamp: str = "door_lamp", coil: int | None = None) -> dict:
        c = self._coil(room, lamp, coil)
        self.store.jammed.pop(c, None)
        return {"coil": c, "jammed": None}

    # -- looking -------------------------------------------------------------
    def lamps(self, room: str | None = None) -> dict[str, dict[str, bool]]:
        """What a person standing in the corridor sees (jammed coils show their stuck value)."""
        s = self.store
        out = {}
        for rid, r in self.cfg.rooms.items():
            if room is None or rid == room:
                out[rid] = {lamp: bool(s.jammed.get(n, s.coils[n])) for lamp, n in r.lamps().items()}
        if room is not None and not out:
            raise SimError(f"{self.device_id}: no room '{room}'")
        return out

    def get(self) -> dict[str, Any]:
        s = self.store
        return {
            "inputs": list(s.level),
            "latched": list(s.latched),
            "stuck": dict(s.stuck),
            "coils": list(s.coils),
            "jammed": dict(s.jammed),
            "latching": self.io.latching,
            "input_reads": s.input_reads,
            "coil_writes": s.coil_writes,
            "rooms": {
                rid: {
                    **{b: bool(s.stuck.get(n, s.level[n])) for b, n in r.inputs().items()},
                    **{lamp: bool(s.jammed.get(n, s.coils[n])) for lamp, n in r.lamps().items()},
                }
                for rid, r in self.cfg.rooms.items()
            },
        }
