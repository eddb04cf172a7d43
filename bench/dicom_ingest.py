"""Receive one synthetic PET-CT study of 1,000 instances from DCMTK's storescu: suitemon vs DCMTK's storescp.

Yardstick: ``storescp +B`` (bit-preserving write to disk, nothing else; it never fsyncs).
suitemon: the real daemon process (``suitemon run``, the same service classes as in
production, extraction on) with a private Mosquitto, once per ``[dicom].fsync`` variant:
``all`` (the shipped default: every instance on disk before "success") and ``reports``
(only the dose reports flushed: like-for-like with storescp for the images).
The sender is the same ``storescu -R +sd`` for both, TCP_NODELAY=1 on both ends (pitfalls.md).
Runs alternate (DCMTK, suitemon, DCMTK, ...) so both see the same machine load.

Times:
- ``transfer_s``: storescu's wall time (how long the scanner is held up);
- suitemon ``ingest_s``: from storescu start until the study's dose summary is on MQTT, minus the
  configured ``study_idle_s`` (waiting for silence after the last instance is not work). This is
  transfer + parsing + extraction + checks + journal + publish, i.e. "with extraction on".
Ratio = suitemon ingest_s / DCMTK transfer_s (medians), per variant. Target: <= 2.5.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import ROOT, Broker, free_port, proc_cpu_s, tree_cpu_s, write_result
from suitemon.simulators import dicom_study as st

ENV = {**os.environ, "TCP_NODELAY": "1"}
IDLE_S = 0.2
# Receivers write under the same base directory (a local disk, like /var/lib/suitemon). On this
# kind of VM, /tmp creates files 30-50x slower than /var/tmp (something watches it), which would
# measure the machine's /tmp rather than either receiver.
WORK = os.environ.get("BENCH_TMP", "/var/tmp")
TARGET_RATIO = 2.5


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def storescu(port: int, called: str, files: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(
        ["storescu", "-R", "-aet", "PETCT1", "-aec", called, "+sd", "127.0.0.1", str(port), str(files)],
        capture_output=True,
        text=True,
        env=ENV,
    )
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"storescu failed: {r.stderr[-500:]}")
    return took


def dcmtk_run(files: Path, n: int) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-storescp-", dir=WORK) as out:
        p = subprocess.Popen(
            ["storescp", "+B", "-od", out, str(port)],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port)
            took = storescu(port, "ANY-SCP", files)
            got = len(os.listdir(out))
        finally:
            p.terminate()
            p.wait(10)
    if got != n:
        raise RuntimeError(f"storescp stored {got} of {n}")
    return {"transfer_s": round(took, 3), "instances_per_s": round(n / took, 1)}


class Daemon:
    def __init__(self, broker_port: int, fsync: str):
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-suitemon-", dir=WORK)
        self.port = free_port()
        # One site id per daemon: the daemon's MQTT client id (suitemon-<site>-<host>) and its dose/study
        # topic come from it. With one shared site, the two daemons kicked each other off the broker every
        # second ("already connected, closing old connection") and each bench subscriber also saw the
        # other daemon's summaries; a summary published while a subscriber was disconnected was lost.
        self.site = f"bench-{fsync}"
        cfg = Path(self.tmp.name) / "suite.toml"
        cfg.write_text(f"""
[site]
id = "{self.site}"
name = "bench"
[mqtt]
port = {broker_port}
[state]
dir = "{self.tmp.name}/state"
[logging]
level = "warning"
[dicom]
port = {self.port}
study_idle_s = {IDLE_S}
fsync = "{fsync}"
[[dicom.allow]]
ae_title = "PETCT1"
""")
        self.summaries: list[tuple[float, dict]] = []
        self.cond = threading.Condition()
        self.mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-dicom-{os.getpid()}-{fsync}")
        self.mqtt.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"suitemon/{self.site}/dose/study", 1)
        self.mqtt.on_message = self._on_message
        self.mqtt.connect("127.0.0.1", broker_port)
        self.mqtt.loop_start()
        self.log = open(Path(self.tmp.name) / "daemon.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "suitemon.daemon.cli", "run", "-c", str(cfg), "--log-format", "json"],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.summaries.append((time.perf_counter(), json.loads(msg.payload)))
            self.cond.notify_all()

    def run(self, files: Path, n: int, revision: int) -> dict:
        cpu0, main0 = tree_cpu_s(self.proc.pid), proc_cpu_s(self.proc.pid)
        t0 = time.perf_counter()
        took = storescu(self.port, "SUITEMON", files)
        with self.cond:
            ok = self.cond.wait_for(lambda: any(s["revision"] == revision for _, s in self.summaries), 300)
            if not ok:
                raise RuntimeError("no dose summary within 300 s")
            at, summary = next((t, s) for t, s in self.summaries if s["revision"] == revision)
        if summary["instances"]["total"] != n:
            raise RuntimeError(f"summary counts {summary['instances']['total']} of {n} instances")
        ingest = at - t0 - IDLE_S
        return {
            "transfer_s": round(took, 3),
            "ingest_s": round(ingest, 3),
            "instances_per_s": round(n / ingest, 1),  # the whole tree: the DICOM parser is a child process
            "daemon_cpu_s": round(tree_cpu_s(self.proc.pid) - cpu0, 2),
            "main_process_cpu_s": round(proc_cpu_s(self.proc.pid) - main0, 2),
            "summary_ok": summary["checks"]["ct_reference"] in ("ok", "exceeded"),
        }

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        self.mqtt.loop_stop()
        self.log.close()
        self.tmp.cleanup()


def _figures(runs: list[dict], n: int, dcmtk_s: float) -> dict:
    ingest = statistics.median(x["ingest_s"] for x in runs)
    transfer = statistics.median(x["transfer_s"] for x in runs)
    return {
        "median_transfer_s": transfer,
        "median_ingest_s": ingest,
        "instances_per_s": round(n / ingest, 1),
        "transfer_instances_per_s": round(n / transfer, 1),
        "ratio_ingest_vs_dcmtk": round(ingest / dcmtk_s, 2),
        "ratio_transfer_vs_dcmtk": round(transfer / dcmtk_s, 2),
        "median_daemon_cpu_s_process_tree": statistics.median(x["daemon_cpu_s"] for x in runs),
        "median_daemon_cpu_s_main_process": statistics.median(x["main_process_cpu_s"] for x in runs),
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--ct", type=int, default=600, help="CT slices (512 x 512)")
    ap.add_argument("--pet", type=int, default=398, help="PET slices (192 x 192); +2 dose reports")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--fsync",
        action="append",
        choices=["all", "reports", "none"],
        help="suitemon [dicom].fsync variants to run (default: all (the shipped default) and reports)",
    )
    a = ap.parse_args()
    variants = a.fsync or ["all", "reports"]
    for tool in ("storescu", "storescp", "mosquitto"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            sys.exit(f"{tool} is not installed (apt-get install dcmtk mosquitto)")
    n = a.ct + a.pet + 2
    with tempfile.TemporaryDirectory(prefix="bench-study-", dir=WORK) as d, Broker() as broker:
        files = Path(d)
        spec = st.StudySpec(ct_slices=a.ct, pet_slices=a.pet, accession="BENCH1")
        t0 = time.perf_counter()
        st.write_study(spec, files)
        size_mb = sum(p.stat().st_size for p in files.iterdir()) / 1e6
        print(f"wrote {n} instances ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        daemons = {v: Daemon(broker.port, v) for v in variants}
        dcmtk: list[dict] = []
        ours: dict[str, list[dict]] = {v: [] for v in variants}
        try:
            for r in range(a.runs):
                dcmtk.append(dcmtk_run(files, n))
                line = f"run {r + 1}: dcmtk {dcmtk[-1]['transfer_s']} s"
                for v, dmn in daemons.items():
                    ours[v].append(dmn.run(files, n, revision=r + 1))
                    line += f", suitemon fsync={v} transfer {ours[v][-1]['transfer_s']} s ingest {ours[v][-1]['ingest_s']} s"
                print(line, file=sys.stderr)
        finally:
            for dmn in daemons.values():
                dmn.close()
    med_dcmtk = statistics.median(x["transfer_s"] for x in dcmtk)
    figs = {v: _figures(ours[v], n, med_dcmtk) for v in variants}
    default = "all" if "all" in figs else variants[0]
    like = "reports" if "reports" in figs else default
    result = {
        "instances": n,
        "study_mb": round(size_mb),
        "ct_matrix": 512,
        "pet_matrix": 192,
        "runs": a.runs,
        "work_dir": WORK,
        "study_idle_s_subtracted": IDLE_S,
        "load_average_1min_at_end": os.getloadavg()[0],
        "yardstick_dcmtk_storescp": {
            "median_transfer_s": med_dcmtk,
            "instances_per_s": round(n / med_dcmtk, 1),
            "runs": dcmtk,
            "note": "storescp +B never fsyncs",
        },
        **{f"suitemon_fsync_{v}": f for v, f in figs.items()},
        "target_ratio": TARGET_RATIO,
        "ratio_default_config": figs[default]["ratio_ingest_vs_dcmtk"],
        "ratio_like_for_like": figs[like]["ratio_ingest_vs_dcmtk"],
        "meets_target": figs[default]["ratio_ingest_vs_dcmtk"] <= TARGET_RATIO,
        "meets_target_like_for_like": figs[like]["ratio_ingest_vs_dcmtk"] <= TARGET_RATIO,
        "summary": (
            f"{n} instances, extraction on: DCMTK storescp {n / med_dcmtk:.0f}/s; suitemon "
            + "; ".join(
                f"fsync={v} {figs[v]['instances_per_s']:.0f}/s (ratio {figs[v]['ratio_ingest_vs_dcmtk']}, "
                f"CPU {figs[v]['median_daemon_cpu_s_process_tree']} s process tree)"
                for v in variants
            )
            + f"; target <= {TARGET_RATIO}"
        ),
    }
    write_result(a.out, "dicom_ingest", result)


if __name__ == "__main__":
    main()
