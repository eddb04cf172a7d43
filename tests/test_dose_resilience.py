"""Nothing lost: administrations completed while the broker is down, or faster than suitemon can read
them, reach the journal and the broker; an overrun ring is an alarm, never a silent gap. Plus the
daily summary from the CLI and on command."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
from conftest import Suite
from dose_fixtures import dispenser, events, extra, patient, records, wait_alarm, wait_records
from helpers import REPO, SUITEMON, Mosquitto, Watcher, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from schema_check import problems

from suitemon.daemon.alarms import parse_iso


class PersistentMosquitto(Mosquitto):
    """A private broker that keeps sessions across a clean restart, so the test's subscriber misses nothing."""

    def start(self) -> PersistentMosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.workdir}/\nmax_queued_messages 100000\n"
        )
        self.log = open(self.workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(conf)], stdout=self.log, stderr=self.log)
        wait_until(self._accepting, 10, what=f"mosquitto on port {self.port}")
        return self

    def stop_gracefully(self) -> None:
        """SIGTERM: mosquitto saves its sessions on the way out (the daemon just sees the broker vanish)."""
        self.proc.terminate()
        self.proc.wait(10)
        self.proc = None
        self.log.close()


class SessionSubscriber:
    """An MQTT 3.1.1 client with a persistent session: the broker queues for it while it is away."""

    def __init__(self, port: int, topic: str, client_id: str):
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=False
        )
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.connect("127.0.0.1", port, keepalive=5)
        self.c.loop_start()

    def _on_message(self, c, u, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload))
            self.cond.notify_all()

    def wait_for(self, pred, timeout, what):
        return wait_until(lambda: pred(self), timeout, what=what, cond=self.cond)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def first_reading(watcher: Watcher, suite: Suite) -> None:
    """Administrations before the daemon's first reading of a new unit predate monitoring (baseline)."""
    t = suite.topic("device", "disp", "state")
    watcher.wait_for(lambda w: (s := w.json_of(t)) and s["values"], 10, what="first reading")


def journal_count(suite: Suite, type_: str) -> int:
    db = sqlite3.connect(f"file:{suite.tmp / 'state' / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM events WHERE type = ?", (type_,)).fetchone()[0]
    finally:
        db.close()


def test_no_administration_lost_while_the_broker_is_down(tmp_path):
    mq = PersistentMosquitto(tmp_path / "mq").start()
    suite = Suite(tmp_path / "s", mq, {"disp": dispenser(tmp_path)}, extra())
    watcher = Watcher(mq.port)
    sub = SessionSubscriber(mq.port, f"suitemon/{suite.site}/dose/administration", f"dose-sink-{suite.site}")
    try:
        suite.start_sims()
        suite.start_daemon(watcher)
        first_reading(watcher, suite)
        suite.sim("disp", "administer", **patient(1, room=1))
        wait_records(watcher, suite.site, 1)

        mq.stop_gracefully()  # the broker goes away
        suite.sim("disp", "burst", jobs=[patient(2, room=3), patient(3, room=1)])  # two complete meanwhile
        suite.sim("disp", "administer", **patient(4, room=3))
        wait_until(lambda: journal_count(suite, "dose.administered") == 4, 10, what="journaled while offline")

        mq.start()  # back on the same port: the daemon reconnects by itself and sends its backlog in order
        got = sub.wait_for(
            lambda s: len({json.loads(p)["event_id"] for _, p in s.messages}) >= 4 and s,
            20,
            what="all four records at the subscriber",
        )
        recs, seen = [], set()
        for _, p in got.messages:
            m = json.loads(p)
            if m["event_id"] not in seen:
                seen.add(m["event_id"])
                recs.append(m["record"])
        assert [r["record_id"] for r in recs] == ["disp-1001", "disp-1002", "disp-1003", "disp-1004"]
        assert [r["completion_seq"] for r in recs] == [1, 2, 3, 4]
        assert journal_count(suite, "dose.administered") == 4  # recorded once each
        assert not problems(got.messages)
        assert not problems(watcher.messages)
    finally:
        sub.close()
        watcher.close()
        suite.close()
        if mq.proc is not None:
            mq.stop()


def test_ring_overrun_while_unreadable_is_an_alarm_not_a_silent_gap(make_suite, watcher, tmp_path):
    suite = make_suite({"disp": dispenser(tmp_path)}, extra())
    suite.start_sims()
    suite.start_daemon(watcher)
    site = suite.site
    first_reading(watcher, suite)
    suite.sim("disp", "fault", silent=True)
    wait_alarm(watcher, site, "disp.comm_lost", state="active")
    # Ten administrations while suitemon cannot read: the unit's ring holds the last eight.
    suite.sim("disp", "burst", jobs=[patient(n, room=1 + 2 * (n % 2)) for n in range(1, 11)])
    suite.sim("disp", "clear")
    lost = wait_alarm(watcher, site, "disp.records_lost.2", state="active")
    assert lost["priority"] == "medium" and lost["latching"] is True
    assert lost["details"]["from_seq"] == 1 and lost["details"]["to_seq"] == 2
    recs = wait_records(watcher, site, 8)
    assert [r["record_id"] for r in recs] == [f"disp-{j}" for j in range(1003, 1011)]
    wait_alarm(watcher, site, "disp.comm_lost", state="closed")


def test_a_replaced_unit_restarting_its_counters_loses_and_merges_nothing(make_suite, watcher, tmp_path):
    suite = make_suite({"disp": dispenser(tmp_path)}, extra())
    suite.start_sims()
    suite.start_daemon(watcher)
    site = suite.site
    first_reading(watcher, suite)
    suite.sim("disp", "burst", jobs=[dict(patient(1), ago_s=60), dict(patient(2, room=3), ago_s=50)])
    wait_records(watcher, site, 2)
    # Swapped for a new unit whose job numbers start again at 1001 (the interface forbids reuse).
    suite.sim("disp", "replace_unit")
    suite.sim("disp", "administer", **patient(3, room=3), ago_s=5)
    recs = wait_records(watcher, site, 3)
    assert [r["record_id"] for r in recs] == ["disp-1001", "disp-1002", "disp-1001-1"]
    assert recs[2]["patient_ref"] == "P0003" and recs[2]["completion_seq"] == 1
    assert "job: number 1001 reused by the unit" in recs[2]["issues"]
    bad = wait_alarm(watcher, site, "dose.disp-1001-1.record", state="active")
    assert bad["priority"] == "medium" and "reused" in bad["message"]
    reset = watcher.wait_for(lambda w: events(w, site, "dose.counter_reset"), 5, what="counter reset event")
    assert reset[0]["data"]["previous"] == 2 and reset[0]["data"]["now"] == 1


def test_daily_summary_from_the_cli_and_on_command(make_suite, watcher, tmp_path):
    suite = make_suite({"disp": dispenser(tmp_path)}, extra())
    suite.start_sims()
    suite.start_daemon(watcher)
    site = suite.site
    first_reading(watcher, suite)
    suite.sim("disp", "over_tolerance", pct=-20)
    suite.sim(
        "disp",
        "burst",
        jobs=[
            dict(patient(1), ago_s=5),
            dict(patient(2, room=3), ago_s=5),
            dict(patient(3, exam="PSMA", mbq=150), ago_s=5),
        ],
    )
    recs = wait_records(watcher, site, 3)
    total = sum(r["administered_mbq"] for r in recs)
    day = (
        datetime.fromtimestamp(parse_iso(recs[0]["administered_at"]), ZoneInfo("Europe/London"))
        .date()
        .isoformat()
    )

    out = subprocess.run(
        [*SUITEMON, "doses", "summary", "-c", str(suite.path), "--date", day, "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["administrations"] == 3 and s["date"] == day
    assert abs(s["total_administered_mbq"] - total) < 0.2
    # The wrong radiopharmaceutical is also notifiable (CQC criteria), whatever its dose.
    assert s["checks_failed"] == {"tolerance": 1, "radiopharmaceutical": 1, "notifiable": 1}
    assert s["administrations_with_failed_checks"] == 2
    assert s["by_room"] == {"uptake1": 2, "uptake3": 1}
    table = subprocess.run(
        [*SUITEMON, "doses", "summary", "-c", str(suite.path), "--date", day],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert "administrations        3" in table.stdout and "tolerance" in table.stdout

    watcher.publish(suite.topic("cmd", "rps", "dose_summary"), {"date": day, "request_id": "s1"})
    reply = watcher.wait_for(lambda w: (r := w.json_of(suite.topic("reply", "rps"))) and r, 5, what="reply")
    assert reply["ok"] and reply["result"]["administrations"] == 3
    pub = watcher.wait_for(lambda w: w.json_of(suite.topic("dose", "summary")), 5, what="published summary")
    assert pub["trigger"] == "request" and pub["checks_failed"] == s["checks_failed"]
    watcher.publish(suite.topic("cmd", "rps", "dose_summary"), {"date": "yesterday"})
    bad = watcher.wait_for(
        lambda w: (r := w.json_of(suite.topic("reply", "rps"))) and not r["ok"] and r, 5, what="rejection"
    )
    assert "YYYY-MM-DD" in bad["error"]
    assert len(records(watcher, site)) == 3
