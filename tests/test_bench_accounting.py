"""Benchmark accounting: one pass/fail key, and CPU/RSS of the daemon's whole process tree."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from helpers import REPO, wait_until

sys.path.insert(0, str(REPO))
from bench.common import VERDICT, proc_cpu_s, tree_cpu_s, tree_pss_mb, tree_rss_mb, write_result
from bench.run_all import verdict


def test_a_result_without_the_shared_verdict_key_is_refused(tmp_path):
    # press_latency wrote "meets_targets" and run_all read "meets_target": results.md showed "-".
    with pytest.raises(ValueError, match=VERDICT):
        write_result(str(tmp_path / "r.json"), "press_latency", {"meets_targets": True})
    write_result(str(tmp_path / "r.json"), "press_latency", {VERDICT: True})
    assert (tmp_path / "r.json").exists()


def test_run_all_shows_the_verdict_and_flags_a_misspelt_key():
    assert verdict({"status": "ok", VERDICT: True}) == "met"
    assert verdict({"status": "ok", VERDICT: False}) == "MISSED"
    assert verdict({"status": "ok", "meets_targets": True}).startswith("NO VERDICT")


def test_process_tree_cpu_counts_a_busy_child_the_main_process_figure_misses():
    # The daemon's DICOM parser is a child process; here a parent that only waits on a child that
    # burns 2 s of CPU. Waiting on CPU seconds, not wall time, keeps it true on a loaded machine.
    code = (
        "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
        "'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 2: pass\\ntime.sleep(60)']); "
        "import time; time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_until(lambda: psutil.Process(parent.pid).children(), 30, what="the child process")
        tree0, main0 = tree_cpu_s(parent.pid), proc_cpu_s(parent.pid)
        wait_until(
            lambda: tree_cpu_s(parent.pid) - tree0 >= 1.0,
            60,
            interval=0.1,
            what="the child's CPU in the tree",
        )
        assert proc_cpu_s(parent.pid) - main0 < 0.1  # the main process alone would show next to nothing
        rss, pss = tree_rss_mb(parent.pid), tree_pss_mb(parent.pid)
        assert rss > 2 * 5  # two Python interpreters, each several MB
        assert 0 < pss <= rss  # shared pages split, not counted twice
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
