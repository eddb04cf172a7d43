"""Modbus RTU poll rate against the serial line's theoretical maximum, at 9600 and 19200 baud.

A pty ignores the baud rate, so the simulator paces its answers as a real line would
(10 bits a character, the 3.5-character silence that ends a frame). The driver under test
is the daemon's own (pymodbus client + our Bus with its inter-frame gap), reading one block
of holding registers as fast as it can for a fixed time.

Theoretical maximum per poll: request (8 bytes) + 3.5 chars + response (5 + 2N bytes) + 3.5 chars.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result
from suitemon.daemon import logs
from suitemon.daemon.config import parse_config
from suitemon.drivers.modbus_link import ModbusDevice
from suitemon.drivers.profile import parse_profile
from suitemon.simulators.base import RegisterStore
from suitemon.simulators.modbus_server import Faults, RtuServer, Unit


async def run(baud: int, registers: int, seconds: float) -> dict:
    tmp = tempfile.TemporaryDirectory()
    path = str(Path(tmp.name) / "line.tty")
    store = RegisterStore()
    store.define("holding", 0, registers)
    server = RtuServer(path, {1: Unit(store, Faults())}, baudrate=baud, pace=True)
    await server.start()
    cfg = parse_config(
        {
            "site": {"id": "b", "name": "b"},
            "devices": {
                "d": {
                    "kind": "modbus_points",
                    "transport": "rtu",
                    "serial_port": path,
                    "baudrate": baud,
                    "timeout_s": 1.0,
                }
            },
        }
    )
    dev_cfg = cfg.devices["d"]
    profile = parse_profile(
        {"points": {f"r{i}": {"table": "holding", "address": i} for i in range(registers)}}
    )
    dev = ModbusDevice(dev_cfg, profile)
    await dev.bus.ensure_connected()
    await dev.read_points()  # warm up
    n = 0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - t0 < seconds:
        await dev.read_points()
        n += 1
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await dev.close()
    await server.stop()
    tmp.cleanup()
    ct = 10 / baud
    ideal_cycle = (8 + 3.5 + (5 + 2 * registers) + 3.5) * ct
    rate = n / wall
    return {
        "baud": baud,
        "registers_per_poll": registers,
        "polls": n,
        "polls_per_s": round(rate, 2),
        "line_max_polls_per_s": round(1 / ideal_cycle, 2),
        "fraction_of_line_rate": round(rate * ideal_cycle, 3),
        "cpu_ms_per_poll_incl_simulator": round(1000 * cpu / n, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--registers", type=int, default=10)
    ap.add_argument("--out")
    a = ap.parse_args()
    logs.setup("warning", "json")
    results = [asyncio.run(run(b, a.registers, a.seconds)) for b in (9600, 19200)]
    write_result(
        a.out,
        "modbus_rtu_line_rate",
        {
            "what": "RTU polls/s of the daemon's driver against the theoretical line maximum (paced simulator)",
            "runs": results,
            "target_fraction": 0.8,
            "meets_target": all(r["fraction_of_line_rate"] >= 0.8 for r in results),
        },
    )


if __name__ == "__main__":
    main()
