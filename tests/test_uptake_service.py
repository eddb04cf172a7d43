"""The uptake service in-process on a real journal, recorder, alarm engine and occupancy service.

Covers what the MQTT-side tests cannot drive: study-complete events from the DICOM feature,
and rebuilding from a journal left by a crash at awkward moments.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from suitemon.daemon.alarms import AlarmEngine, iso
from suitemon.daemon.commands import Commands
from suitemon.daemon.config import parse_config
from suitemon.daemon.context import Context
from suitemon.daemon.contract import Topics
from suitemon.daemon.doses.uptake import UptakeService
from suitemon.daemon.events import Recorder
from suitemon.daemon.facts import Facts
from suitemon.daemon.journal import open_journal
from suitemon.daemon.metrics import Metrics
from suitemon.daemon.radiation.occupancy import Occupancy

CFG = {
    "site": {"id": "t", "name": "t"},
    "areas": {
        "uptake1": {"name": "Uptake 1", "kind": "uptake_room"},
        "uptake2": {"name": "Uptake 2", "kind": "uptake_room"},
    },
    "roles": {"scanner_team": {"name": "Scanner", "recipients": ["rad1"]}},
    "uptake": {"uptake_s": 60.0, "overdue_s": 120.0, "state_period_s": 60},
}


class Harness:
    def __init__(self, state_dir):
        self.cfg = parse_config(CFG)
        self.journal = open_journal(state_dir, "normal")
        self.recorder = Recorder(self.journal)
        self.published: list[tuple] = []
        self.ctx = Context(
            cfg=self.cfg,
            recorder=self.recorder,
            engine=AlarmEngine(self.recorder, self.cfg),
            topics=Topics("suitemon", "t"),
            metrics=Metrics(),
            facts=Facts(),
            publish_json=lambda *a, **k: self.published.append(a),
        )
        self.ctx.commands = Commands(self.ctx)

    async def start(self):
        self.ctx.engine.restore(self.journal.latest_per_alarm())
        self.occ = self.ctx.services["occupancy"] = Occupancy(self.ctx)
        self.up = self.ctx.services["uptake"] = UptakeService(self.ctx)
        await self.occ.start()
        await self.up.start()
        return self

    async def settle(self):
        for _ in range(5):  # group commit, listeners, and what they record in turn
            await asyncio.sleep(0)
        self.recorder.flush()

    def of_type(self, t):
        return [e.data for e in self.journal.events_of_type(t)]

    async def close(self):
        await self.up.stop()
        self.recorder.flush()
        self.journal.close()


def dose(rid, room, patient, accession, administered_at):
    return {
        "record_id": rid,
        "patient_ref": patient,
        "accession": accession,
        "room": room,
        "radiopharmaceutical": "FDG",
        "radionuclide": "F-18",
        "prescribed_mbq": 300.0,
        "measured_mbq": 320.0,
        "residual_mbq": 2.0,
        "administered_at": iso(administered_at),
        "calibration_at": None,
        "weight_kg": 80.0,
        "operator": None,
        "device": "disp",
        "job": int(rid.split("-")[1]),
        "administered_mbq": 298.0,
    }


def run(coro):
    return asyncio.run(coro)


def test_study_complete_frees_the_matching_room_only(tmp_path):
    async def go():
        h = await Harness(tmp_path).start()
        now = time.time()
        h.recorder.record("dose.administered", dose("disp-1", "uptake1", "P1", "A1", now))
        h.recorder.record("dose.administered", dose("disp-2", "uptake2", "P2", "A2", now))
        await h.settle()
        assert set(h.up.clocks) == {"uptake1", "uptake2"}
        assert h.occ.occupied("uptake1") and h.occ.get("uptake1")["activity_mbq"] == 298.0

        h.recorder.record("dicom.study_complete", {"patient_ref": "P9", "accession": "A9"})  # nobody here
        h.recorder.record("dicom.study_complete", {"patient_ref": "P1", "accession": "A1", "room": "uptake2"})
        await h.settle()
        assert set(h.up.clocks) == {"uptake1", "uptake2"}  # the room contradicts the patient: no match

        h.recorder.record("dicom.study_complete", {"patient_ref": "P2", "accession": "A2"})
        await h.settle()
        assert set(h.up.clocks) == {"uptake1"}
        assert not h.occ.occupied("uptake2") and h.occ.occupied("uptake1")
        freed = [d for d in h.of_type("occupancy.changed") if not d["occupied"]]
        assert freed == [{**freed[0], "area": "uptake2", "source": "event:dicom.study_complete"}]
        ended = h.of_type("uptake.ended")
        assert [(d["record_id"], d["reason"]) for d in ended] == [("disp-2", "room freed")]
        await h.close()

    run(go())


def test_an_administration_journaled_just_before_a_crash_gets_its_clock_at_restart(tmp_path):
    async def go():
        h = Harness(tmp_path)
        t_adm = time.time() - 90  # injected 90 s ago: ready (60 s) is already due, overdue (120 s) not yet
        h.recorder.record("dose.administered", dose("disp-7", "uptake1", "P7", "A7", t_adm))
        h.recorder.flush()  # ... and the process died before the uptake service saw it
        h.journal.close()

        h = await Harness(tmp_path).start()
        await h.settle()
        started = h.of_type("uptake.started")
        assert [(d["record_id"], d["ready_at"]) for d in started] == [("disp-7", iso(t_adm + 60))]
        assert h.occ.occupied("uptake1")
        await asyncio.sleep(0.05)  # the overdue-at-once ready timer fires on the next loop turn
        await h.settle()
        ready = h.of_type("uptake.ready")
        assert len(ready) == 1 and ready[0]["late_s"] >= 29
        assert h.ctx.engine.alarms.get("uptake.uptake1.overdue") is None
        await h.close()

        # Restart again: the ready notice is not sent twice, the clock is still running.
        h = await Harness(tmp_path).start()
        await asyncio.sleep(0.05)
        await h.settle()
        assert len(h.of_type("uptake.ready")) == 1 and len(h.of_type("uptake.started")) == 1
        assert h.up.room_state("uptake1")["state"] == "ready"
        await h.close()

    run(go())


def test_a_room_freed_while_down_ends_its_clock_and_overdue_fires_at_once(tmp_path):
    async def go():
        h = await Harness(tmp_path).start()
        long_ago = time.time() - 200  # past overdue
        h.recorder.record("dose.administered", dose("disp-1", "uptake1", "P1", "A1", long_ago))
        h.recorder.record("dose.administered", dose("disp-2", "uptake2", "P2", "A2", long_ago))
        await h.settle()
        await asyncio.sleep(0.05)
        await h.settle()
        assert {a.alarm_id for a in h.ctx.engine.open_alarms()} == {
            "uptake.uptake1.overdue",
            "uptake.uptake2.overdue",
        }
        await h.close()

        # While suitemon is down someone frees room 1 (an occupancy event from another process' view:
        # here written straight into the journal, as the core would have).
        h = Harness(tmp_path)
        h.recorder.record(
            "occupancy.changed",
            {
                "area": "uptake1",
                "occupied": False,
                "since": iso(time.time()),
                "source": "command",
                "activity_mbq": None,
                "administered_at": None,
                "reason": "left",
            },
            actor="nurse1",
        )
        h.recorder.flush()
        h.journal.close()

        h = await Harness(tmp_path).start()
        await h.settle()
        assert set(h.up.clocks) == {"uptake2"}
        assert [d["record_id"] for d in h.of_type("uptake.ended")] == ["disp-1"]
        assert {a.alarm_id for a in h.ctx.engine.open_alarms()} == {"uptake.uptake2.overdue"}
        await h.close()

    run(go())


@pytest.mark.parametrize("room", [None, ""])
def test_an_administration_without_a_room_starts_no_clock(tmp_path, room):
    async def go():
        h = await Harness(tmp_path).start()
        h.recorder.record("dose.administered", dose("disp-1", room, "P1", "A1", time.time()))
        await h.settle()
        assert h.up.clocks == {} and h.of_type("occupancy.changed") == []
        await h.close()

    run(go())
