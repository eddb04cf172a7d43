"""Run the simulators for the devices of a config, with a control socket.

``suitemon sim -c FILE`` uses this. Modbus simulators that share a line (one serial
port or one host:port) share one server and are told apart by unit id. For RTU the
host creates a pty pair and links its far end at the device's ``serial_port`` path,
so the daemon opens a real serial line. The control socket speaks JSON lines on
loopback: {"device": ..., "action": ..., "args": {...}} -> {"ok": ..., "result"|"error": ...}.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog

from suitemon.daemon import kinds
from suitemon.simulators.base import ModbusSimulator, SimError, Simulator
from suitemon.simulators.modbus_server import RtuServer, TcpServer

log = structlog.get_logger("suitemon.sim")


class SimHost:
    def __init__(self, cfg, *, only: set[str] | None = None, pace: bool | None = None):
        self.cfg = cfg
        self.sims: dict[str, Simulator] = {}
        self.endpoints: dict[str, Any] = {}
        self._control: asyncio.base_events.Server | None = None
        self.pace = pace
        for did, dev in cfg.devices.items():
            if not dev.enabled or (only is not None and did not in only):
                continue
            cls = kinds.simulator_class(dev.kind)
            if cls is not None:
                self.sims[did] = cls(did, dev)
        for feature in kinds.with_field("sim_factory"):
            if only is not None and feature.name not in only:
                continue
            extra = kinds.load(feature.sim_factory)(cfg)
            if extra is not None:
                self.sims[feature.name] = extra

    async def start(self, control: bool = True) -> None:
        groups: dict[str, list[ModbusSimulator]] = {}
        for sim in self.sims.values():
            if isinstance(sim, ModbusSimulator):
                groups.setdefault(sim.cfg.bus_key, []).append(sim)
        for key, sims in groups.items():
            c = sims[0].cfg
            units = {s.cfg.unit: s.unit for s in sims}
            if c.transport == "rtu":
                pace = self.pace if self.pace is not None else bool(c.sim.get("pace", False))
                bits = 1 + c.bytesize + (0 if c.parity == "N" else 1) + c.stopbits
                ep = RtuServer(c.serial_port, units, baudrate=c.baudrate, pace=pace, bits_per_char=bits)
            else:
                ep = TcpServer(c.host, c.port, units)
            await ep.start()
            self.endpoints[key] = ep
            for s in sims:
                s.endpoint = ep
            log.info("simulated line up", line=key, units=sorted(units), devices=[s.device_id for s in sims])
        for sim in self.sims.values():
            await sim.start()
        if control:
            sc = self.cfg.simulation
            self._control = await asyncio.start_server(
                self._serve_control, sc.control_host, sc.control_port, reuse_address=True
            )
            log.info("simulator control listening", host=sc.control_host, port=sc.control_port)

    async def control(self, device: str, action: str, args: dict[str, Any] | None = None) -> Any:
        if device == "*" and action == "list":
            return {d: sorted(s.actions) for d, s in self.sims.items()}
        sim = self.sims.get(device)
        if sim is None:
            raise SimError(f"no simulated device '{device}'; have: {', '.join(sorted(self.sims))}")
        return await sim.control(action, args)

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise SimError("request must be a JSON object")
                    result = await self.control(
                        str(req.get("device")), str(req.get("action")), req.get("args") or {}
                    )
                    resp = {"ok": True, "result": result}
                except (SimError, ValueError) as err:
                    resp = {"ok": False, "error": str(err)}
                writer.write(json.dumps(resp, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            await self._control.wait_closed()
        for sim in self.sims.values():
            await sim.stop()
        for ep in self.endpoints.values():
            await ep.stop()


async def send_control(
    host: str, port: int, device: str, action: str, args: dict | None = None, timeout: float = 5.0
) -> Any:
    """Client side of the control socket (CLI, scenarios, tests in another process)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(json.dumps({"device": device, "action": action, "args": args or {}}).encode() + b"\n")
        await writer.drain()
        resp = json.loads(await asyncio.wait_for(reader.readline(), timeout))
    finally:
        writer.close()
    if not resp.get("ok"):
        raise SimError(resp.get("error", "simulator error"))
    return resp.get("result")
