"""The paging service in one process with the simulated base station on a real pty: call status,
unconfirmed pages, night rule, config checks. (tests/test_paging_e2e.py runs the whole daemon.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import time as dtime

import pytest
from conftest import BASE
from helpers import deep_merge

from suitemon.daemon.alarms import AlarmEngine, Condition
from suitemon.daemon.config import ConfigError, parse_config
from suitemon.daemon.context import Context
from suitemon.daemon.contract import Topics
from suitemon.daemon.escalation import Escalator
from suitemon.daemon.events import Recorder
from suitemon.daemon.facts import Facts
from suitemon.daemon.journal import Journal
from suitemon.daemon.metrics import Metrics
from suitemon.daemon.paging.config import NightHours
from suitemon.daemon.paging.service import PagingService
from suitemon.simulators.espa_pager import EspaPagerSimulator

ADDR = {"nurse1": "101", "nurse2": "102", "rad1": "201", "switchboard": "2222"}


def config(tmp_path, **paging):
    p = {
        "serial_port": str(tmp_path / f"p-{uuid.uuid4().hex[:6]}.tty"),
        "bytesize": 8,
        "parity": "N",
        "response_timeout_s": 0.2,
        "retries": 0,
        "poll_interval_s": 0.05,
        "recipients": ADDR,
        **paging,
    }
    return parse_config(
        deep_merge(
            BASE,
            {
                "site": {"id": "pg"},
                "alarm_types": {
                    "bells.emergency": {
                        "priority": "high",
                        "kind": "clinical",
                        "latching": True,
                        "emergency": True,
                        "ladder": "deterioration",
                        "protocol": "deterioration",
                    },
                    "ups.fan": {"priority": "low", "kind": "technical", "ladder": "deterioration"},
                },
                "paging": p,
            },
        )
    )


class Harness:
    def __init__(self, tmp_path, cfg):
        self.journal = Journal(tmp_path / f"j-{uuid.uuid4().hex[:6]}.sqlite3")
        self.recorder = Recorder(self.journal)
        engine = AlarmEngine(self.recorder, cfg)
        Escalator(engine, cfg)
        self.ctx = Context(
            cfg=cfg,
            recorder=self.recorder,
            engine=engine,
            topics=Topics("suitemon", "pg"),
            metrics=Metrics(),
            facts=Facts(),
            publish_json=lambda *a, **k: None,
        )
        self.sim = EspaPagerSimulator("paging_base", cfg.paging)
        self.svc = PagingService(self.ctx)

    def deliveries(self, state=None):
        self.recorder.flush()
        return [
            e.data
            for e in self.journal.events_of_type("paging.delivery")
            if state is None or e.data["state"] == state
        ]

    async def until(self, pred, timeout=5.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; deliveries: {self.deliveries()}")
            await asyncio.sleep(0.02)

    def run(self, body):
        async def main():
            await self.sim.start()
            await self.svc.start()
            try:
                return await body(self)
            finally:
                await self.svc.stop()
                self.ctx.engine.escalator.cancel_all()
                await self.sim.stop()
                self.recorder.flush()

        return asyncio.run(main())


def emergency():
    return Condition(
        alarm_id="bells.uptake3.emergency",
        type="bells.emergency",
        present=True,
        location="uptake3",
        message="Emergency button",
    )


def notify_steps(h):
    h.recorder.flush()
    return [(e.data["step"], e.data["reason"]) for e in h.journal.events_of_type("alarm.notify")]


def test_call_status_not_delivered_fails_the_page_and_moves_the_ladder_on(tmp_path):
    h = Harness(tmp_path, config(tmp_path, status_returned=True, accepted_call_status=["1"]))

    async def body(h):
        h.sim.set_fault(not_delivered=["101", "102"])
        h.ctx.engine.apply(emergency())
        await h.until(lambda: {x["recipient"] for x in h.deliveries("accepted")} == {"rad1", "switchboard"})
        return h.deliveries()

    d = h.run(body)
    failed = [x for x in d if x["state"] == "failed"]
    assert {(x["step"], x["recipient"], x["call_status"]) for x in failed} >= {(0, "nurse1", "0")}
    assert all("not delivered" in x["reason"] for x in failed)
    sent = [x["recipient"] for x in d if x["state"] == "sent" and x["step"] == 0]
    assert sorted(sent) == ["nurse1", "nurse2"]  # the paging system took both blocks; status said otherwise
    # nurse1/nurse2's handsets are out of reach in step 1 too: on to the failsafe step, which is reached.
    assert notify_steps(h)[:3] == [(0, "raised"), (1, "page_failed"), (2, "page_failed")]


def test_no_call_status_in_time_is_unconfirmed(tmp_path):
    h = Harness(tmp_path, config(tmp_path, status_returned=True, status_timeout_s=0.3))

    async def body(h):
        h.sim.status_returned = False  # a base station that never reports, though the site said it would
        h.ctx.engine.apply(emergency())
        await h.until(lambda: len(h.deliveries("failed")) >= 2)
        return h.deliveries("failed")

    failed = h.run(body)
    assert all("no call status" in x["reason"] for x in failed)
    assert notify_steps(h)[1] == (1, "page_failed")


@pytest.mark.parametrize(
    "at_night, allowed, paged", [(True, False, False), (True, True, True), (False, False, True)]
)
def test_low_technical_alarm_pages_at_night_only_when_configured(
    tmp_path, monkeypatch, at_night, allowed, paged
):
    monkeypatch.setattr(NightHours, "contains", lambda self, t: at_night)
    h = Harness(
        tmp_path,
        config(tmp_path, night={"start": "22:00", "end": "07:00"}, page_low_technical_at_night=allowed),
    )

    async def body(h):
        h.ctx.engine.apply(Condition(alarm_id="ups.fan", type="ups.fan", present=True, message="Fan failed"))
        h.ctx.engine.apply(emergency())  # an emergency always pages, night or day
        await h.until(lambda: sum(1 for x in h.deliveries() if x["state"] in ("accepted", "suppressed")) >= 4)
        return h.deliveries()

    d = h.run(body)
    fan = {x["state"] for x in d if x["alarm_id"] == "ups.fan"}
    assert fan == ({"queued", "accepted"} if paged else {"suppressed"})
    assert {x["state"] for x in d if x["alarm_id"] != "ups.fan"} == {"queued", "accepted"}
    # The notification announced exactly those pages, in the state they started in.
    planned = planned_pages(h, "ups.fan")
    assert {e["state"] for e in planned.values()} == ({"queued"} if paged else {"suppressed"})
    assert set(planned) == {x["page_id"] for x in d if x["alarm_id"] == "ups.fan"}


def planned_pages(h, alarm_id):
    h.recorder.flush()
    return {
        e["page_id"]: e
        for ev in h.journal.events_of_type("alarm.notify")
        if ev.alarm_id == alarm_id
        for e in ev.data["delivery"]
        if e["page_id"] is not None
    }


def test_the_service_suppresses_what_the_notification_announced_even_if_night_ends_meanwhile(
    tmp_path, monkeypatch
):
    # Night for the first look only: the notification is planned at night, the page handled after dawn.
    looks = iter([True])
    monkeypatch.setattr(NightHours, "contains", lambda self, t: next(looks, False))
    h = Harness(tmp_path, config(tmp_path, night={"start": "22:00", "end": "07:00"}))

    async def body(h):
        h.ctx.engine.apply(Condition(alarm_id="ups.fan", type="ups.fan", present=True, message="Fan failed"))
        await h.until(lambda: len(h.deliveries()) >= 2)
        return h.deliveries()

    d = h.run(body)
    assert {e["state"] for e in planned_pages(h, "ups.fan").values()} == {"suppressed"}
    assert {x["state"] for x in d} == {"suppressed"}


def test_a_low_clinical_alarm_pages_at_night(tmp_path, monkeypatch):
    monkeypatch.setattr(NightHours, "contains", lambda self, t: True)
    cfg = config(tmp_path, night={"start": "22:00", "end": "07:00"})
    cfg = cfg.model_copy(
        update={
            "alarm_types": {
                **cfg.alarm_types,
                "ups.fan": cfg.alarm_types["ups.fan"].model_copy(update={"kind": "clinical"}),
            }
        }
    )
    h = Harness(tmp_path, cfg)

    async def body(h):
        h.ctx.engine.apply(
            Condition(alarm_id="ups.fan", type="ups.fan", present=True, message="Patient call")
        )
        await h.until(lambda: len(h.deliveries("accepted")) >= 2)
        return h.deliveries()

    assert "suppressed" not in {x["state"] for x in h.run(body)}


def test_night_hours_wrap_midnight():
    n = NightHours(start="22:00", end="07:00")
    assert n.contains(dtime(23, 0)) and n.contains(dtime(6, 59)) and not n.contains(dtime(7, 0))
    assert not n.contains(dtime(12, 0))
    day = NightHours(start="01:00", end="05:00")
    assert day.contains(dtime(3, 0)) and not day.contains(dtime(23, 0))


def test_config_rejects_unknown_recipient_and_same_addresses(tmp_path):
    with pytest.raises(ConfigError) as err:
        config(tmp_path, recipients={"nurse9": "109"}, control_station_address="2")
    text = str(err.value)
    assert "paging" in text and "must differ" in text
    with pytest.raises(ConfigError, match=r"paging.recipients.nurse9: 'nurse9' is no role's recipient"):
        config(tmp_path, recipients={"nurse9": "109"})
    with pytest.raises(ConfigError, match=r"paging.recipients.nurse1"):
        config(tmp_path, recipients={"nurse1": "12ab"})
