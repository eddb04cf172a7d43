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
from bench.common import machine  # noqa: E402

# name -> extra args for the full run; names that do not exist yet are skipped with a note.
BENCHES = {
    "journal_publish": [],
    "modbus_line_rate": [],
    "press_latency": [],
    "dicom_ingest": ["--runs", "3"],
    "idle": [],
    "report_month": [],
}


def headline(name: str, r: dict) -> str:
    try:
        if name == "journal_publish":
            return (f"{r['suitemon_sync_full']['events_per_s']:.0f} events/s journaled (fsync) + published; "
                    f"raw paho QoS 1: {r['yardstick_raw_paho_qos1']['equivalent_events_per_s']:.0f}/s "
                    f"(ratio {r['ratio_full_vs_raw']}); target >= 1000")
        if name == "modbus_line_rate":
            return "; ".join(f"{x['baud']} baud: {x['polls_per_s']} polls/s = {100 * x['fraction_of_line_rate']:.0f} % "
                             f"of line max {x['line_max_polls_per_s']}" for x in r["runs"]) + "; target >= 80 %"
        if name == "idle":
            return (f"daemon {r['daemon_cpu_percent_of_one_core']} % of one core, {r['daemon_rss_mb']} MB RSS "
                    f"({r['devices']} devices); mosquitto {r['yardstick_mosquitto']['cpu_percent_of_one_core']} %, "
                    f"{r['yardstick_mosquitto']['rss_mb']} MB; targets <= 2 %, <= 120 MB")
        if "summary" in r:
            return str(r["summary"])
    except (KeyError, TypeError):
        pass
    return json.dumps({k: v for k, v in r.items() if k not in ("machine", "when", "benchmark")})[:300]


def _row(name: str, r: dict) -> tuple[str, str]:
    if r.get("status") != "ok":
        return ("FAILED" if r.get("status") == "failed" else "-", r.get("status", "-"))
    met = r.get("meets_target")
    return ("met" if met else ("MISSED" if met is False else "-"), headline(name, r))


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
            rows.append((name, "-", "not present in bench/"))
            continue
        out = out_dir / f"{name}.json"
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, str(script), "--out", str(out), *extra],
                              capture_output=True, text=True, cwd=HERE.parent)
        took = round(time.monotonic() - t0, 1)
        if proc.returncode != 0 or not out.exists():
            results[name] = {"status": "failed", "stderr": proc.stderr[-2000:]}
            rows.append((name, "FAILED", proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"))
            continue
        r = json.loads(out.read_text())
        results[name] = {"status": "ok", "seconds": took, **r}
        met = r.get("meets_target")
        rows.append((name, "met" if met else ("MISSED" if met is False else "-"), headline(name, r)))
    if a.only and (HERE / "results.json").exists():
        # A partial run refreshes the named benchmarks and keeps the others' last figures.
        previous = json.loads((HERE / "results.json").read_text()).get("results", {})
        results = {**previous, **results}
        rows = [(n, *next(((t, h) for m, t, h in rows if m == n), _row(n, previous[n])))
                for n in BENCHES if n in results]
    doc = {"machine": machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}
    (HERE / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = ["| benchmark | target | figures (same run, side by side with the yardstick) |", "|---|---|---|"]
    md += [f"| {n} | {t} | {h} |" for n, t, h in rows]
    m = doc["machine"]
    table = "\n".join(md)
    (HERE / "results.md").write_text(f"# Benchmark results\n\nMachine: {m['cpu']}, {m['cores']} cores, "
                                     f"{m['mem_gb']} GB, Python {m['python']}, {doc['when']}.\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
