"""Idle CPU and memory of the daemon running the example suite against its simulators.

The daemon and the simulators run as separate processes (as in production the daemon
runs alone), the config is examples/suite.toml made local. After a warm-up, the CPU time
and RSS of the daemon's whole process tree (its DICOM parser is a child process) are read
over a window. Mosquitto's own figures over the same window are the peer yardstick.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import dump_toml  # noqa: E402

from bench.common import (  # noqa: E402
    Broker,
    load_average,
    proc_cpu_s,
    proc_rss_mb,
    tree_cpu_s,
    tree_pss_mb,
    tree_rss_mb,
    tree_size,
    write_result,
)
from suitemon.daemon.demo.run import localize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    with Broker() as b, tempfile.TemporaryDirectory() as tmp:
        data = localize(tomllib.loads((ROOT / "examples" / "suite.toml").read_text()), Path(tmp), b.port, "5")
        data["logging"] = {"level": "warning", "format": "json"}
        cfg = Path(tmp) / "suite.toml"
        cfg.write_text(dump_toml(data))
        py = sys.executable
        sim = subprocess.Popen(
            [py, "-m", "suitemon.daemon.cli", "sim", "-c", str(cfg)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2)
        daemon = subprocess.Popen(
            [py, "-m", "suitemon.daemon.cli", "run", "-c", str(cfg)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(a.warmup)
            if daemon.poll() is not None:
                raise SystemExit("the daemon exited during warm-up")
            d0, m0, t0 = tree_cpu_s(daemon.pid), proc_cpu_s(b.proc.pid), time.monotonic()
            main0 = proc_cpu_s(daemon.pid)
            time.sleep(a.seconds)
            d1, m1, t1 = tree_cpu_s(daemon.pid), proc_cpu_s(b.proc.pid), time.monotonic()
            main1 = proc_cpu_s(daemon.pid)
            rss, main_rss, nproc = tree_rss_mb(daemon.pid), proc_rss_mb(daemon.pid), tree_size(daemon.pid)
            pss = tree_pss_mb(daemon.pid)
            mrss = proc_rss_mb(b.proc.pid)
            load = load_average()
        finally:
            daemon.terminate()
            sim.terminate()
            daemon.wait(10)
            sim.wait(10)
        wall = t1 - t0
        devices = len(data.get("devices", {}))
    cpu_pct = 100 * (d1 - d0) / wall
    write_result(
        a.out,
        "idle",
        {
            "what": "daemon process tree CPU (% of one core) and RSS with the example suite polling its simulators",
            "devices": devices,
            "window_s": round(wall, 1),
            "load_average_at_end": load,
            "daemon_processes": nproc,
            "daemon_cpu_percent_of_one_core": round(cpu_pct, 2),
            # memory target on PSS: the RSS sum counts the interpreter's shared pages once per process
            "daemon_pss_mb": round(pss, 1),
            "daemon_rss_sum_mb": round(rss, 1),
            "main_process_only": {
                "cpu_percent_of_one_core": round(100 * (main1 - main0) / wall, 2),
                "rss_mb": round(main_rss, 1),
            },
            "yardstick_mosquitto": {
                "cpu_percent_of_one_core": round(100 * (m1 - m0) / wall, 2),
                "rss_mb": round(mrss, 1),
            },
            "targets": {"cpu_percent": 2.0, "pss_mb": 120},
            "meets_target": cpu_pct <= 2.0 and pss <= 120,
        },
    )


if __name__ == "__main__":
    main()
