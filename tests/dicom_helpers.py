"""Plumbing for DICOM tests: a [dicom] section, real SCUs (pynetdicom, DCMTK), waits on summaries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from helpers import free_port

SCANNER_AE = "PETCT1"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # Debian's DCMTK stalls ~40 ms per instance without it


def dicom_section(**kw) -> dict:
    d = {
        "port": free_port(),
        "study_idle_s": 0.6,
        "location": "uptake1",
        "allow": [{"ae_title": SCANNER_AE, "address": "127.0.0.0/8"}],
    }
    d.update(kw)
    return {"dicom": d}


def target(suite) -> dict:
    d = suite.data["dicom"]
    return {
        "host": "127.0.0.1",
        "port": d["port"],
        "called_ae": d.get("ae_title", "SUITEMON"),
        "calling_ae": SCANNER_AE,
    }


def dcmtk(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    exe = shutil.which(tool)
    assert exe, f"{tool} (DCMTK) is not installed: run .ci/run"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)


def summaries(watcher, site: str) -> list[dict]:
    t = f"suitemon/{site}/dose/study"
    return [json.loads(p) for top, p, *_ in watcher.messages if top == t]


def wait_summary(watcher, site: str, study_uid: str, revision: int = 1, timeout: float = 20) -> dict:
    def found(w):
        for s in summaries(w, site):
            if s["study_uid"] == study_uid and s["revision"] == revision:
                return s
        return None

    return watcher.wait_for(found, timeout, what=f"dose summary of {study_uid[-12:]} rev {revision}")


def wait_event(watcher, site: str, type_: str, pred=lambda e: True, timeout: float = 15) -> dict:
    def found(w):
        for e in w.events(site):
            if e["type"] == type_ and pred(e):
                return e
        return None

    return watcher.wait_for(found, timeout, what=f"event {type_}")


def spool_files(suite, sub: str = "incoming") -> list[Path]:
    root = Path(suite.data["dicom"].get("spool_dir") or Path(suite.data["state"]["dir"]) / "dicom-spool")
    return sorted(p for p in (root / sub).glob("*") if not p.name.startswith("."))
