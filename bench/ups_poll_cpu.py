"""CPU per poll of each UPS kind, measured in this process on its own thread clock.

The APC Modbus driver (over TCP to its simulator) is the yardstick; the NUT driver polls a
real upsd (Debian's nut-server, dummy-ups fed by the battery model), the SNMP driver a real
snmpd (v2c and v3 authPriv, one GET of 12 scalars a poll). Target (issue 16):
a NUT or SNMP poll costs <= 2 ms CPU. The servers run in other processes (upsd) or are
excluded (the in-process Modbus simulator's time is measured apart and subtracted by
running it in its own thread's clock: thread_time counts only the polling thread).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import VERDICT, free_port, load_average, write_result
from suitemon.daemon import kinds
from suitemon.daemon.config import parse_config
from suitemon.simulators.host import SimHost

TARGET_MS = 2.0


def secret(name: str, text: str) -> str:
    import tempfile

    p = Path(tempfile.mkdtemp(prefix="bench-snmp-")) / name
    p.write_text(text + "\n")
    p.chmod(0o600)
    return str(p)


def config(kind: str):
    dev = {"kind": kind, "port": free_port(), "poll_s": 1.0, "timeout_s": 1.0}
    if kind == "ups_apc":
        dev.update(transport="tcp", host="127.0.0.1")
    elif kind == "ups_nut":
        dev.update(ups="bench")
    elif kind == "ups_snmp":
        dev.update(version="2c", community="bench")
    else:
        dev.update(
            version="3",
            user="bench",
            auth_password_file=secret("auth", "bench-auth-1"),
            priv_password_file=secret("priv", "bench-priv-1"),
        )
        dev["kind"] = "ups_snmp"
    return parse_config(
        {
            "site": {"id": "bench", "name": "b"},
            "simulation": {"control_port": free_port()},
            "devices": {"ups": dev},
        }
    )


def serve(cfg, ready: threading.Event, stop: threading.Event) -> None:
    """The simulator on its own loop and thread, so its CPU is not the poller's."""

    async def main():
        host = SimHost(cfg)
        await host.start(control=False)
        ready.set()
        while not stop.is_set():  # noqa: ASYNC110 (stop is a threading.Event set from the bench thread)
            await asyncio.sleep(0.05)
        await host.stop()

    asyncio.run(main())


def measure(kind: str, polls: int) -> dict:
    cfg = config(kind)
    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=serve, args=(cfg, ready, stop), daemon=True)
    t.start()
    if not ready.wait(30):
        raise RuntimeError(f"{kind}: simulator did not start")

    async def run():
        dev = cfg.devices["ups"]
        d = kinds.driver_class(dev.kind)("ups", dev)
        await d.open()
        for _ in range(5):  # warm up: imports, first connection
            await d.poll()
        cpu = []
        for _ in range(polls):
            c0 = time.thread_time()
            await d.poll()
            cpu.append((time.thread_time() - c0) * 1000)
        await d.close()
        return cpu

    try:
        cpu = asyncio.run(run())
    finally:
        stop.set()
        t.join(15)
    return {
        "polls": polls,
        "median_cpu_ms": round(statistics.median(cpu), 3),
        "p95_cpu_ms": round(sorted(cpu)[int(0.95 * len(cpu)) - 1], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out")
    ap.add_argument("--polls", type=int, default=200)
    args = ap.parse_args()
    before = load_average()
    t0 = time.monotonic()
    figs = {k: measure(k, args.polls) for k in ("ups_apc", "ups_nut", "ups_snmp", "ups_snmp_v3")}
    med = {k: f["median_cpu_ms"] for k, f in figs.items()}
    write_result(
        args.out,
        "ups_poll_cpu",
        {
            "status": "ok",
            "seconds": round(time.monotonic() - t0, 1),
            "load_before": before,
            "load_after": load_average(),
            "kinds": figs,
            "target_ms": TARGET_MS,
            VERDICT: all(med[k] <= TARGET_MS for k in ("ups_nut", "ups_snmp", "ups_snmp_v3")),
            "summary": f"CPU per poll (median): NUT {med['ups_nut']} ms, SNMP v2c {med['ups_snmp']} ms, "
            f"SNMP v3 authPriv {med['ups_snmp_v3']} ms, APC Modbus {med['ups_apc']} ms (yardstick); "
            f"target <= {TARGET_MS} ms",
        },
    )


if __name__ == "__main__":
    main()
