"""Write journals for the report tests and the month benchmark, without a daemon.

The events come from the daemon's own code, on a scripted clock: alarms through the real
``AlarmEngine`` (so every snapshot has the shape the daemon journals), dose administrations
through the real dose checks with the site's dispensing config, bell-test passes in the shape
``daemon/bells/weekly.py`` records. ``SuiteWriter`` is the recorder the engine writes to:
it appends to a keyed journal at the scripted time instead of the wall clock.
"""

from __future__ import annotations

import random
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suitemon.daemon.alarms import AlarmEngine, Condition, Escalation, Reset, iso
from suitemon.daemon.bells.weekly import TEST_PASS
from suitemon.daemon.config import parse_config
from suitemon.daemon.doses.checks import run_checks
from suitemon.daemon.journal import Journal

REPO = Path(__file__).resolve().parent.parent
KEY = b"report-test-chain-key-0123456789abcdef"


def ts_text(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def example_config(state_dir: Path):
    """The shipped example site, with its state in state_dir and the chain key written there."""
    data = tomllib.loads((REPO / "examples" / "suite.toml").read_text())
    data["state"] = {**data.get("state", {}), "dir": str(state_dir)}
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "journal-chain.key").write_bytes(KEY)
    return parse_config(data, "examples/suite.toml")


class SuiteWriter:
    """A recorder on a scripted clock; the real alarm engine writes through it."""

    def __init__(self, cfg, *, commit_every: int = 2000):
        self.cfg = cfg
        self.journal = Journal(cfg.state.dir / "journal.sqlite3", "normal", chain_key=KEY)
        self.journal.start_keyed_segment()
        self.now = 0.0
        self.engine = AlarmEngine(self, cfg, clock=lambda: self.now)
        self._pending = 0
        self._commit_every = commit_every

    # -- the Recorder interface the engine uses ----------------------------------------
    def record(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        alarm_id: str | None = None,
        actor: str = "system",
        event_id: str | None = None,
    ):
        ev = self.journal.append(
            type_, data, alarm_id=alarm_id, actor=actor, ts=ts_text(self.now), event_id=event_id
        )
        self._pending += 1
        if self._pending >= self._commit_every:
            self.flush()
        return ev

    def flush(self) -> None:
        self.journal.commit()
        self._pending = 0

    def close(self) -> None:
        self.flush()
        self.journal.close()

    def at(self, t: float) -> SuiteWriter:
        self.now = t
        return self

    # -- the daemon ----------------------------------------------------------------------
    def daemon(self, t: float, started: bool) -> None:
        self.at(t).record(
            "daemon.started" if started else "daemon.stopped",
            {"version": "test", "pid": 1} if started else {"reason": "stop requested"},
        )

    # -- alarms ----------------------------------------------------------------------------
    def condition(self, t: float, alarm_id: str, type_: str, present: bool, **kw) -> None:
        at = self.cfg.alarm_types.get(type_)
        self.at(t).engine.apply(
            Condition(
                alarm_id=alarm_id,
                type=type_,
                present=present,
                priority=kw.pop("priority", at.priority if at else "medium"),
                kind=kw.pop("kind", at.kind if at else "technical"),
                latching=kw.pop("latching", at.latching if at else False),
                **kw,
            )
        )

    def notify(self, t: float, alarm_id: str, step: int, role: str) -> None:
        rec = self.engine.get(alarm_id)
        self.now = t
        rec.escalation = Escalation(
            ladder="test",
            step=step,
            role=role,
            recipients=[f"{role}1"],
            step_started_at=iso(t),
            deadline=iso(t + 30),
            failsafe=False,
        )
        self.engine.record_escalation(rec, "raised" if step == 0 else "timeout")

    def ack(self, t: float, alarm_id: str, actor: str) -> None:
        self.at(t).engine.acknowledge(alarm_id, actor)

    def accept(self, t: float, alarm_id: str, actor: str) -> None:
        self.at(t).engine.accept(alarm_id, actor)

    def reset(self, t: float, alarm_id: str, actor: str, reason: str = "reset") -> None:
        self.at(t).engine.apply(Reset(alarm_id, actor=actor, reason=reason))

    # -- call bells -----------------------------------------------------------------------
    def bell_call(
        self,
        t: float,
        room: str,
        *,
        cancel_after: float,
        accept_after: float | None = None,
        button: str = "call",
    ) -> None:
        dev = self.cfg.devices["bells"]
        aid = f"bells.{room}.{button}"
        type_ = dev.call_type if button == "call" else dev.emergency_type
        name = self.cfg.areas[room].name
        self.condition(
            t,
            aid,
            type_,
            True,
            source="bells",
            location=room,
            message=f"Call from {name}",
            details={"room": room, "room_name": name, "origin": "button"},
        )
        self.notify(t, aid, 0, "room_nurse")
        if accept_after is not None:
            self.accept(t + accept_after, aid, "nurse1")
        self.condition(
            t + 1.0,
            aid,
            type_,
            False,
            source="bells",
            location=room,
            message=f"Call from {name}",
            details={"room": room, "room_name": name, "origin": "button"},
        )
        self.reset(t + cancel_after, aid, f"cancel@{room}", "cancelled in the room")

    def bell_test_pass(self, t: float, room: str) -> None:
        dev = self.cfg.devices["bells"]
        for button, inp in dev.rooms[room].inputs().items():
            self.at(t).record(
                TEST_PASS,
                {"device": "bells", "room": room, "button": button, "input": inp, "test_id": f"t{int(t)}"},
                actor="nurse1",
            )

    # -- doses ------------------------------------------------------------------------------
    def administration(
        self,
        t: float,
        n: int,
        exam: str,
        measured_mbq: float,
        *,
        weight_kg: float = 75.0,
        prescribed_mbq: float | None = None,
        room: str = "uptake1",
    ) -> dict:
        ex = self.cfg.dispensing.exams[exam]
        e = {
            "seq": n,
            "job": n,
            "patient_ref": f"p{n:015x}",
            "accession": None,
            "room": room,
            "room_number": 1,
            "radiopharmaceutical": ex.radiopharmaceutical,
            "radionuclide": ex.radionuclide,
            "prescribed_mbq": prescribed_mbq or measured_mbq,
            "measured_mbq": measured_mbq,
            "residual_mbq": 0.0,
            "administered_at": t,
            "measured_at": t,
            "residual_at": t,
            "weight_kg": weight_kg,
            "operator": "op1",
            "exam": exam,
            "issues": [],
        }
        act, checks, msv = run_checks(e, self.cfg.dispensing)
        data = {
            "record_id": f"dispenser-{n}",
            "patient_ref": e["patient_ref"],
            "accession": None,
            "room": room,
            "radiopharmaceutical": e["radiopharmaceutical"],
            "radionuclide": e["radionuclide"],
            "prescribed_mbq": e["prescribed_mbq"],
            "measured_mbq": measured_mbq,
            "residual_mbq": 0.0,
            "administered_at": ts_text(t),
            "calibration_at": ts_text(t),
            "weight_kg": weight_kg,
            "operator": "op1",
            "device": "dispenser",
            "job": n,
            "completion_seq": n,
            "exam": exam,
            "room_number": 1,
            "residual_at": ts_text(t),
            "half_life_s": act.half_life_s,
            "administered_mbq": round(act.administered_mbq, 3),
            "effective_dose_msv": round(msv, 3) if msv is not None else None,
            "checks": [c.summary() for c in checks],
            "issues": [],
        }
        self.at(t).record("dose.administered", data, actor="dispenser")
        return data

    # -- devices and power -------------------------------------------------------------------
    def comm_lost(self, t: float, device: str, seconds: float) -> None:
        loc = getattr(self.cfg.devices[device], "location", None)
        aid = f"{device}.comm_lost"
        self.condition(
            t, aid, "device.comm_lost", True, source=device, location=loc, message=f"{device}: no reply"
        )
        self.condition(t + seconds, aid, "device.comm_lost", False, source=device, location=loc, message="")

    def on_battery(self, t: float, seconds: float, ups: str = "ups") -> None:
        aid = f"{ups}.on_battery"
        self.condition(
            t,
            aid,
            "ups.on_battery",
            True,
            priority="high",
            source=ups,
            location="control",
            message="mains power lost",
        )
        self.condition(
            t + seconds, aid, "ups.on_battery", False, priority="high", source=ups, location="control"
        )


def busy_month(cfg, first_day_ts: float, days: int, *, events_per_day: int, seed: int = 17) -> int:
    """A busy suite's month, for the benchmark: call bells, radiation warnings that flap, comm
    blips, doses. Random but seeded; returns the number of events written."""
    rng = random.Random(seed)
    w = SuiteWriter(cfg, commit_every=20000)
    rooms = list(cfg.devices["bells"].rooms)
    monitors = [d for d, dev in cfg.devices.items() if dev.kind in ("area_monitor_modbus", "ludlum375")]
    w.daemon(first_day_ts, True)
    n_admin = 0
    for day in range(days):
        t0 = first_day_ts + day * 86400
        start_seq = w.journal.last_seq
        admins_today = 0
        while w.journal.last_seq - start_seq < events_per_day:
            t = t0 + rng.uniform(7 * 3600, 19 * 3600)
            r = rng.random()
            if r < 0.4:
                w.bell_call(
                    t,
                    rng.choice(rooms),
                    cancel_after=rng.uniform(20, 400),
                    accept_after=rng.uniform(5, 60) if rng.random() < 0.8 else None,
                )
            elif r < 0.75:
                mon = rng.choice(monitors)
                dev = cfg.devices[mon]
                aid = f"{mon}.rate_warning"
                if aid not in w.engine.alarms:
                    w.condition(
                        t,
                        aid,
                        "radiation.rate_warning",
                        True,
                        source=mon,
                        location=dev.location,
                        message="dose rate above the warning level",
                    )
                    w.condition(
                        t + rng.uniform(5, 300),
                        aid,
                        "radiation.rate_warning",
                        False,
                        source=mon,
                        location=dev.location,
                    )
            elif r < 0.95:
                dev = rng.choice(monitors)
                if f"{dev}.comm_lost" not in w.engine.alarms:
                    w.comm_lost(t, dev, rng.uniform(2, 120))
            elif admins_today < 20:  # a busy day of the suite; staff dose limits cap it (domain.md)
                admins_today += 1
                n_admin += 1
                w.administration(t, n_admin, "PETONC", rng.gauss(370, 25))
        if day % 7 == 0:
            for room in rooms:
                w.bell_test_pass(t0 + 8 * 3600, room)
    w.close()
    return w.journal.last_seq
