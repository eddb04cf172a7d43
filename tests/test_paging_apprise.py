"""The apprise channel: an e-mail delivered to a real SMTP server on loopback (aiosmtpd), tracked like a page."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from aiosmtpd.controller import Controller
from conftest import BASE
from helpers import deep_merge, free_port

from suitemon.daemon.alarms import AlarmEngine, Condition
from suitemon.daemon.config import ConfigError, parse_config
from suitemon.daemon.context import Context
from suitemon.daemon.contract import Topics
from suitemon.daemon.escalation import Escalator
from suitemon.daemon.events import Recorder
from suitemon.daemon.facts import Facts
from suitemon.daemon.journal import Journal
from suitemon.daemon.metrics import Metrics
from suitemon.daemon.paging.apprise_channel import AppriseChannel
from suitemon.daemon.paging.pages import Page

# apprise keeps its own thread pool for synchronous plugins (SMTP) for the life of the process
pytestmark = pytest.mark.leaks_allowed(
    'apprise keeps its own thread pool for synchronous plugins (SMTP) for the life of the process'
)


class Inbox:
    def __init__(self):
        self.mails: list[tuple[str, list[str], str]] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        with self.cond:
            self.mails.append(
                (envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace"))
            )
            self.cond.notify_all()
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield inbox, ctl.port
    ctl.stop()


def mail_url(port: int, to: str) -> str:
    return f"mailto://127.0.0.1:{port}?from=suitemon@example.org&to={to}&mode=insecure&user=&pass="


def config(urls: dict):
    return parse_config(
        deep_merge(
            BASE,
            {
                "site": {"id": "ap"},
                "alarm_types": {
                    "bells.emergency": {
                        "priority": "high",
                        "kind": "clinical",
                        "latching": True,
                        "emergency": True,
                        "ladder": "deterioration",
                        "protocol": "deterioration",
                    }
                },
                "messaging": {"timeout_s": 10, "recipients": urls},
            },
        )
    )


def run(tmp_path, cfg, until):
    journal = Journal(tmp_path / f"j-{uuid.uuid4().hex[:6]}.sqlite3")
    recorder = Recorder(journal)
    engine = AlarmEngine(recorder, cfg)
    Escalator(engine, cfg)
    ctx = Context(
        cfg=cfg,
        recorder=recorder,
        engine=engine,
        topics=Topics("suitemon", "ap"),
        metrics=Metrics(),
        facts=Facts(),
        publish_json=lambda *a, **k: None,
    )
    ch = AppriseChannel(ctx)

    def deliveries():
        recorder.flush()
        return [e.data for e in journal.events_of_type("paging.delivery")]

    async def main():
        await ch.start()
        engine.apply(
            Condition(
                alarm_id="bells.uptake3.emergency",
                type="bells.emergency",
                present=True,
                location="uptake3",
                message="Emergency button",
            )
        )
        deadline = asyncio.get_running_loop().time() + 15
        while not until(deliveries()):
            assert asyncio.get_running_loop().time() < deadline, deliveries()
            await asyncio.sleep(0.05)
        await ch.stop()
        engine.escalator.cancel_all()
        recorder.flush()

    asyncio.run(main())
    steps = [(e.data["step"], e.data["reason"]) for e in journal.events_of_type("alarm.notify")]
    return deliveries(), steps


def test_email_reaches_the_local_smtp_server_and_is_accepted(tmp_path, smtp):
    inbox, port = smtp
    cfg = config({"nurse1": [mail_url(port, "nurse1@example.org")]})
    d, steps = run(tmp_path, cfg, lambda d: any(x["state"] == "accepted" for x in d))
    assert [x["state"] for x in d] == ["queued", "accepted"]
    assert d[0]["channel"] == "apprise" and d[0]["address"] == f"mailto://127.0.0.1:{port}"
    with inbox.cond:
        inbox.cond.wait_for(lambda: inbox.mails, 5)
    frm, to, content = inbox.mails[0]
    assert to == ["nurse1@example.org"] and frm == "suitemon@example.org"
    assert (
        "Call Resus team on 2222" in content and "Stay with the patient" in content and "Uptake 3" in content
    )
    assert steps == [(0, "raised")]


def test_smtp_server_down_fails_the_delivery_and_moves_the_ladder_on(tmp_path):
    cfg = config({"nurse1": [mail_url(free_port(), "nurse1@example.org")]})
    d, steps = run(tmp_path, cfg, lambda d: any(x["state"] == "failed" for x in d))
    failed = [x for x in d if x["state"] == "failed"]
    assert failed[0]["recipient"] == "nurse1" and "pass" not in failed[0]["address"]
    assert steps[:2] == [(0, "raised"), (1, "page_failed")]


def test_messaging_config_checks_recipients_and_urls():
    with pytest.raises(ConfigError, match=r"messaging.recipients.nobody: 'nobody' is no role's recipient"):
        config({"nobody": ["mailto://127.0.0.1:25?to=a@b.c"]})
    with pytest.raises(ConfigError, match="apprise does not understand"):
        config({"nurse1": ["nosuchservice://x"]})


def test_a_message_left_queued_by_a_restart_goes_out_when_the_channel_starts(tmp_path, smtp):
    inbox, port = smtp
    cfg = config({"nurse1": [mail_url(port, "nurse1@example.org")]})
    journal = Journal(tmp_path / "j.sqlite3")
    recorder = Recorder(journal)
    engine = AlarmEngine(recorder, cfg)
    Escalator(engine, cfg)
    ctx = Context(
        cfg=cfg,
        recorder=recorder,
        engine=engine,
        topics=Topics("suitemon", "ap"),
        metrics=Metrics(),
        facts=Facts(),
        publish_json=lambda *a, **k: None,
    )

    async def main():
        engine.apply(
            Condition(
                alarm_id="bells.uptake3.emergency",
                type="bells.emergency",
                present=True,
                location="uptake3",
                message="Emergency button",
            )
        )
        rec = engine.alarms["bells.uptake3.emergency"]
        # what the previous process journaled before it died: queued, never sent
        recorder.record(
            "paging.delivery",
            Page(
                page_id="n0/nurse1@apprise",
                alarm_id=rec.alarm_id,
                occurrence=rec.occurrence,
                step=0,
                role="room_nurse",
                recipient="nurse1",
                address=f"mailto://127.0.0.1:{port}",
                priority="high",
                text="HIGH Uptake 3",
                emergency=True,
                kind="clinical",
                channel="apprise",
            ).data(reason=None),
        )
        recorder.flush()
        ch = AppriseChannel(ctx)
        await ch.start()
        deadline = asyncio.get_running_loop().time() + 15
        while not any(e.data["state"] == "accepted" for e in journal.events_of_type("paging.delivery")):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
            recorder.flush()
        await ch.stop()
        engine.escalator.cancel_all()

    asyncio.run(main())
    with inbox.cond:
        assert inbox.cond.wait_for(lambda: inbox.mails, 5)
    assert "Call Resus team on 2222" in inbox.mails[0][2]
