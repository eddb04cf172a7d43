"""Simulator base classes: a device model with an explicit table of control actions.

Every simulator answers the same control verbs for faults (``fault``, ``clear``,
``unplug``, ``plug``, ``get``, ``set``) plus its own (``press``, ``mains_fail``...).
Actions are looked up in a table, never by method name, and a bad action or
argument is an error the caller sees.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from suitemon.drivers.profile import BIT_TABLES, Profile, encode, load_profile
from suitemon.simulators.modbus_server import ILLEGAL_ADDRESS, Faults, ModbusError, Unit

Action = Callable[..., Any | Awaitable[Any]]


class SimError(Exception):
    pass


class Simulator:
    def __init__(self, device_id: str, cfg: Any):
        self.device_id = device_id
        self.cfg = cfg
        self.options: dict[str, Any] = dict(getattr(cfg, "sim", {}) or {})
        self.actions: dict[str, Action] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def control(self, action: str, args: dict[str, Any] | None = None) -> Any:
        fn = self.actions.get(action)
        if fn is None:
            raise SimError(
                f"{self.device_id}: unknown action '{action}'; known: {', '.join(sorted(self.actions))}"
            )
        try:
            result = fn(**(args or {}))
        except TypeError as err:
            raise SimError(f"{self.device_id}.{action}: bad arguments: {err}") from None
        if inspect.isawaitable(result):
            result = await result
        return result


class RegisterStore:
    """Sparse Modbus tables; reading an address no point covers is an illegal-address exception."""

    def __init__(self):
        self.tables: dict[str, dict[int, int]] = {t: {} for t in ("coil", "discrete", "input", "holding")}
        self.on_write: Callable[[str, int, list[int]], None] | None = None
        self.writable: dict[str, set[int]] = {t: set() for t in self.tables}

    def define(self, table: str, address: int, count: int = 1, writable: bool = False) -> None:
        for a in range(address, address + count):
            self.tables[table].setdefault(a, 0)
            if writable:
                self.writable[table].add(a)

    def read(self, table: str, address: int, count: int) -> list[int]:
        t = self.tables[table]
        try:
            return [t[a] for a in range(address, address + count)]
        except KeyError:
            raise ModbusError(ILLEGAL_ADDRESS) from None

    def write(self, table: str, address: int, values: list[int]) -> None:
        t = self.tables[table]
        for a in range(address, address + len(values)):
            if a not in t or (table != "coil" and a not in self.writable[table]):
                raise ModbusError(ILLEGAL_ADDRESS)
        for i, v in enumerate(values):
            t[address + i] = v
        if self.on_write is not None:
            self.on_write(table, address, values)

    def poke(self, table: str, address: int, values: list[int]) -> None:
        """Model-side write: no permission checks, no write hook."""
        for i, v in enumerate(values):
            self.tables[table][address + i] = v


class ModbusSimulator(Simulator):
    """A Modbus device model: a register store laid out by a profile, plus faults."""

    default_profile: str | None = None

    def __init__(self, device_id: str, cfg: Any):
        super().__init__(device_id, cfg)
        self.profile: Profile | None = None
        ref = getattr(cfg, "profile", None) or self.default_profile
        if ref:
            self.profile = load_profile(ref)
        self.store = RegisterStore()
        self.faults = Faults()
        self.unit = Unit(self.store, self.faults, on_request=self.update)
        self.endpoint: Any = None  # set by the host: RtuServer or TcpServer serving this unit
        if self.profile is not None:
            for p in self.profile.points:
                self.store.define(p.table, p.address, p.count, writable=p.writable)
        self.actions.update(
            {
                "fault": self.set_fault,
                "clear": self.clear_faults,
                "unplug": self.unplug,
                "plug": self.plug,
                "set": self.set_point,
                "get": self.get_points,
                "noise": self.noise,
            }
        )

    def update(self) -> None:
        """Advance the device model before an answer (physics, timers). Override."""

    def set_point(self, **values: Any) -> dict[str, Any]:
        assert self.profile is not None
        for name, value in values.items():
            try:
                p = self.profile.point(name)
            except KeyError:
                raise SimError(f"{self.device_id}: no point '{name}'") from None
            self.store.poke(p.table, p.address, encode(p, value))
        return values

    def get_points(self) -> dict[str, Any]:
        from suitemon.drivers.profile import decode

        assert self.profile is not None
        out = {}
        for p in self.profile.points:
            out[p.name] = decode(p, self.store.read(p.table, p.address, p.count))
        return out

    def set_fault(self, **faults: Any) -> dict[str, Any]:
        for k, v in faults.items():
            if not hasattr(self.faults, k):
                raise SimError(f"{self.device_id}: unknown fault '{k}'")
            setattr(self.faults, k, v)
        return dict(self.faults.__dict__)

    def clear_faults(self) -> dict[str, Any]:
        self.faults.clear()
        return dict(self.faults.__dict__)

    async def unplug(self) -> str:
        """Cable pulled: the pty disappears / TCP connections are reset and refused."""
        if self.endpoint is not None:
            await self.endpoint.stop()
        return "unplugged"

    async def plug(self) -> str:
        if self.endpoint is not None:
            await self.endpoint.start()
        return "plugged"

    def noise(self, count: int = 16) -> str:
        import os as _os

        if hasattr(self.endpoint, "write_raw"):
            self.endpoint.write_raw(_os.urandom(count))
        return f"{count} bytes of noise"


def bits_table(table: str) -> bool:
    return table in BIT_TABLES
