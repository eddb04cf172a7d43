"""Run every benchmark in bench/ and write bench/results.json and bench/results.md.

Each benchmark is a script `bench/<name>.py --out FILE` that writes its own JSON figures and
compares, in the same run, against its yardstick. A benchmark that fails is reported as failed,
never silently left out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench.common import VERDICT, load_average, machine  # noqa: E402

# name -> extra args for the full run; names that do not exist yet are skipped with a note.
BENCHES = {
    "journal_publish": [],
    "modbus_line_rate": [],
    "press_latency": [],
    "dicom_ingest": ["--runs", "3"],
    "idle": [],
    "fleet_ingest": ["--collectors", "1", "--collectors", "2"],  # one, and two sharing the consumer
    "page_latency": [],
    "ups_poll_cpu": [],
    "report_month": [],
}


NOISE = (
    "The machine is shared (2 cores, other work running): absolute figures move with its load, "
    "shown per row as the 1-minute load average before -> after. Each row's yardstick ran in the "
    "same run, on the same load, so compare within a row. CPU and memory count the daemon's whole "
    "process tree (its DICOM parser is a child process)."
)


def headline(name: str, r: dict) -> str:
    try:
        if name == "journal_publish":
            return (
                f"{r['suitemon_sync_full']['events_per_s']:.0f} events/s journaled (fsync) + published; "
                f"raw paho QoS 1: {r['yardstick_raw_paho_qos1']['equivalent_events_per_s']:.0f}/s "
                f"(ratio {r['ratio_full_vs_raw']}); target >= 1000"
            )
        if name == "modbus_line_rate":
            return (
                "; ".join(
                    f"{x['baud']} baud: {x['polls_per_s']} polls/s = {100 * x['fraction_of_line_rate']:.0f} % "
                    f"of line max {x['line_max_polls_per_s']}"
                    for x in r["runs"]
                )
                + "; target >= 80 %"
            )
        if name == "idle":
            mem = (
                f"{r['daemon_pss_mb']} MB PSS ({r['daemon_rss_sum_mb']} MB RSS summed)"
                if "daemon_pss_mb" in r
                else f"{r['daemon_rss_mb']} MB RSS"
            )
            return (
                f"daemon {r['daemon_cpu_percent_of_one_core']} % of one core, {mem} "
                f"(process tree of {r.get('daemon_processes', '?')}; main process alone "
                f"{r.get('main_process_only', {}).get('cpu_percent_of_one_core', '?')} %, "
                f"{r.get('main_process_only', {}).get('rss_mb', '?')} MB; {r['devices']} devices); mosquitto {r['yardstick_mosquitto']['cpu_percent_of_one_core']} %, "
                f"{r['yardstick_mosquitto']['rss_mb']} MB RSS; targets <= 2 %, <= 120 MB PSS"
            )
        if name == "page_latency":
            e = r["estimated_at_9600_ms"]
            return (
                f"press -> ESPA block on the line at 9600 baud: p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms "
                f"(pty {r['measured_on_pty_ms']['p99_ms']} ms + line time), {r['missed']} missed of "
                f"{r['presses']}; yardstick: the block's own line time {r['yardstick_block_line_time_ms']} ms; "
                f"target p99 <= 1000 ms"
            )
        if "summary" in r:
            return str(r["summary"])
    except (KeyError, TypeError):
        pass
    return json.dumps({k: v for k, v in r.items() if k not in ("machine", "when", "benchmark")})[:300]


def verdict(r: dict) -> str:
    """met / MISSED from the one shared key; a result without it is a bench defect, shown as such."""
    if r.get("status") not in (None, "ok"):
        return "FAILED" if r.get("status") == "failed" else "-"
    met = r.get(VERDICT)
    if not isinstance(met, bool):
        return f"NO VERDICT (no {VERDICT})"
    return "met" if met else "MISSED"


def when(r: dict) -> str:
    """When a row finished, how long it took and the machine's load then: rows of one table may come
    from different runs (--only), and the shared machine's load moves the figures."""
    if r.get("status") != "ok":
        return "-"
    parts = [str(r.get("when", "?")).replace("T", " ")]
    if r.get("seconds") is not None:
        parts.append(f"{r['seconds']:g} s")
    if r.get("load_before") is not None:
        parts.append(f"load {r['load_before'][0]:g} -> {r['load_after'][0]:g}")
    return ", ".join(parts)


def _row(name: str, r: dict) -> tuple[str, str, str]:
    if r.get("status") != "ok":
        return (verdict(r), "-", r.get("status", "-"))
    return (verdict(r), when(r), headline(name, r))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append")
    a = ap.parse_args()
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    results, rows = {}, []
    for name, extra in BENCHES.items():
        if a.only and name not in a.only:
            continue
        script = HERE / f"{name}.py"
        if not script.exists():
            results[name] = {"status": "not present"}
            rows.append((name, "-", "-", "not present in bench/"))
            continue
        out = out_dir / f"{name}.json"
        t0, load0 = time.monotonic(), load_average()
        proc = subprocess.run(
            [sys.executable, str(script), "--out", str(out), *extra],
            capture_output=True,
            text=True,
            cwd=HERE.parent,
        )
        took = round(time.monotonic() - t0, 1)
        if proc.returncode != 0 or not out.exists():
            results[name] = {"status": "failed", "seconds": took, "stderr": proc.stderr[-2000:]}
            rows.append(
                (
                    name,
                    "FAILED",
                    f"{took:g} s",
                    proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output",
                )
            )
            continue
        r = json.loads(out.read_text())
        results[name] = {
            "status": "ok",
            "seconds": took,
            "load_before": load0,
            "load_after": load_average(),
            **r,
        }
        rows.append((name, *_row(name, results[name])))
    if a.only and (HERE / "results.json").exists():
        # A partial run refreshes the named benchmarks and keeps the others' last figures.
        previous = json.loads((HERE / "results.json").read_text()).get("results", {})
        results = {**previous, **results}
        # (the default is built only when needed: a benchmark new in this run has no previous figures)
        rows = [
            (n, *(next((tuple(rest) for m, *rest in rows if m == n), None) or _row(n, results[n])))
            for n in BENCHES
            if n in results
        ]
    doc = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    (HERE / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = [
        "| benchmark | target | finished (UTC), took, load avg | figures (same run, side by side with the yardstick) |",
        "|---|---|---|---|",
    ]
    md += [f"| {n} | {t} | {w} | {h} |" for n, t, w, h in rows]
    m = doc["machine"]
    table = "\n".join(md)
    (HERE / "results.md").write_text(
        f"# Benchmark results\n\nMachine: {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB, Python {m['python']}, "
        f"{doc['when']}.\n\n{NOISE}\n\n{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
