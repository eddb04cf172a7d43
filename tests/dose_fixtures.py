"""Shared set-up for the dispenser tests: a dispenser device, the dose sections, and waits on MQTT."""

from __future__ import annotations

import json

from helpers import Watcher, free_port

EXAMS = {
    "PETONC": {
        "radionuclide": "F-18",
        "radiopharmaceutical": "FDG",
        "reference_level": {"rule": "per_kg", "mbq_per_kg": 3.5},
    },
    "PSMA": {"radionuclide": "Ga-68", "radiopharmaceutical": "PSMA-11"},
}


def dispenser(tmp_path, transport: str = "tcp", poll_s: float = 0.2, **kw) -> dict:
    d = {
        "kind": "dispenser",
        "name": "Dispenser",
        "location": "hotlab",
        "transport": transport,
        "poll_s": poll_s,
        "timeout_s": 0.2,
        "comm_loss_after": 3,
        "rooms": {"1": "uptake1", "3": "uptake3"},
        "sim": {"time_scale": 100.0, "seed": 7, "error_pct": 1.0, "max_error_pct": 3.0},
    }
    if transport == "tcp":
        d.update(host="127.0.0.1", port=free_port())
    else:
        d.update(serial_port=str(tmp_path / "disp.tty"), baudrate=19200)
    d.update(kw)
    return d


def extra(uptake: dict | None = None, **dispensing) -> dict:
    return {
        "roles": {"scanner_team": {"name": "Scanner", "recipients": ["radiographer1", "radiographer2"]}},
        "dispensing": {"exams": EXAMS, **dispensing},
        "uptake": uptake or {"uptake_s": 3000, "overdue_s": 6000},
    }


def patient(n: int, room: int = 1, mbq: float = 300.0, weight: float = 95.0, exam: str = "PETONC") -> dict:
    return {
        "patient_ref": f"P{n:04d}",
        "accession": f"ACC{n:04d}",
        "room": room,
        "prescribed_mbq": mbq,
        "weight_kg": weight,
        "exam": exam,
        "operator": "tech1",
    }


def records(w: Watcher, site: str) -> list[dict]:
    """Dose records in arrival order, one per journal event (delivery is at-least-once: a message
    re-sent after a crash carries the same event_id and is counted once, as consumers must)."""
    t = f"suitemon/{site}/dose/administration"
    seen, out = set(), []
    for top, p, *_ in w.messages:
        if top == t:
            m = json.loads(p)
            if m["event_id"] not in seen:
                seen.add(m["event_id"])
                out.append(m["record"])
    return out


def wait_records(w: Watcher, site: str, n: int, timeout: float = 10.0) -> list[dict]:
    return w.wait_for(
        lambda w: len(records(w, site)) >= n and records(w, site), timeout, what=f"{n} dose records"
    )


def alarm(w: Watcher, site: str, alarm_id: str) -> dict | None:
    return w.json_of(f"suitemon/{site}/alarm/{alarm_id}")


def wait_alarm(w: Watcher, site: str, alarm_id: str, timeout: float = 10.0, **fields) -> dict:
    def ok(w):
        a = alarm(w, site, alarm_id)
        return a if a and all(a.get(k) == v for k, v in fields.items()) else None

    return w.wait_for(ok, timeout, what=f"alarm {alarm_id} with {fields}")


def events(w: Watcher, site: str, type_: str) -> list[dict]:
    return [e for e in w.events(site) if e["type"] == type_]
