"""Paging end to end: emergency button -> ESPA 4.4.4 pages on the simulated base station -> delivery
tracked on MQTT and in the journal; failed pages move the ladder on; link down; outage and restart."""

from __future__ import annotations

import json

import pytest
from bells_helpers import bells_device, bells_extra, command, notifies, wait_alarm
from helpers import wait_until

AID = "bells.uptake3.emergency"
ADDRESSES = {"nurse1": "101", "nurse2": "102", "rad1": "201", "switchboard": "2222"}


def paging_section(tmp_path, **kw) -> dict:
    # 8N1: a pty keeps CS8 whatever is asked, and pyserial then refuses to reopen it as 7E1 (EINVAL).
    d = {
        "serial_port": str(tmp_path / "paging.tty"),
        "bytesize": 8,
        "parity": "N",
        "response_timeout_s": 0.3,
        "retries": 1,
        "poll_interval_s": 0.2,
        "link_lost_after": 2,
        "message_width": 40,
        "recipients": ADDRESSES,
    }
    d.update(kw)
    return d


def start(make_suite, watcher, tmp_path, steps=(30, 30, 30), **paging):
    extra = bells_extra(steps)
    extra["paging"] = paging_section(tmp_path, **paging)
    suite = make_suite({"bells": bells_device("tcp", tmp_path)}, extra)
    suite.start_sims()
    daemon = suite.start_daemon(watcher)
    wait_until(
        lambda: suite.sim("paging_base", "stats")["polls"] >= 1, 10, what="daemon polls the base station"
    )
    return suite, daemon


def deliveries(watcher, suite, alarm_id=AID) -> list[dict]:
    t = suite.topic("delivery")
    return [
        d
        for top, p, *_ in list(watcher.messages)
        if top == t and (d := json.loads(p))["alarm_id"] == alarm_id
    ]


def states(watcher, suite, state: str) -> list[tuple[int, str]]:
    return [(d["step"], d["recipient"]) for d in deliveries(watcher, suite) if d["state"] == state]


def test_naks_move_the_ladder_on_at_once_and_an_accept_stops_the_pages(make_suite, watcher, tmp_path):
    suite, _ = start(make_suite, watcher, tmp_path)
    # retries = 1: each page is tried twice; 4 NAKs fail both step-0 pages, then the base station recovers.
    suite.sim("paging_base", "fault", nak=4)
    suite.sim("bells", "press", room="uptake3", button="emergency", hold_s=0.05)
    watcher.wait_for(lambda w: len(states(w, suite, "failed")) == 2, 10, what="step-0 pages failed")
    assert sorted(states(watcher, suite, "failed")) == [(0, "nurse1"), (0, "nurse2")]
    failed = [d for d in deliveries(watcher, suite) if d["state"] == "failed"]
    assert all(d["attempts"] == 2 and "NAK" in d["reason"] for d in failed)
    watcher.wait_for(lambda w: len(notifies(w, suite, AID)) >= 2, 5, what="step 1")
    n = notifies(watcher, suite, AID)
    assert [(role, b["step"], b["reason"]) for role, b, _ in n] == [
        ("room_nurse", 0, "raised"),
        ("suite_staff", 1, "page_failed"),
    ]
    assert n[1][2] - n[0][2] < 3.0  # at once, not after the 30 s step
    watcher.wait_for(lambda w: len(states(w, suite, "accepted")) == 3, 10, what="step-1 pages accepted")
    assert sorted(states(watcher, suite, "accepted")) == [(1, "nurse1"), (1, "nurse2"), (1, "rad1")]
    shown = suite.sim("paging_base", "shown")
    assert shown["201"][-1]["text"] == "HIGH Uptake 3 DETERIORATING call 2222"
    assert shown["201"][-1]["priority"] == "3" and "2222" not in shown  # failsafe never paged
    r = command(watcher, suite, "rad1", "accept", alarm_id=AID)
    assert r["ok"], r
    wait_alarm(watcher, suite, AID, 3, state="acknowledged")
    blocks = len(suite.sim("paging_base", "blocks_received"))
    polls = suite.sim("paging_base", "stats")["polls"]
    wait_until(lambda: suite.sim("paging_base", "stats")["polls"] >= polls + 5, 5, what="five more polls")
    assert len(suite.sim("paging_base", "blocks_received")) == blocks == 4 + 3
    assert len(notifies(watcher, suite, AID)) == 2
    # the journal has every state, in order, for each page
    ev = [e for e in watcher.events(suite.site) if e["type"] == "paging.delivery"]
    assert [e["data"]["state"] for e in ev if e["data"]["recipient"] == "rad1"] == ["queued", "accepted"]


def test_link_down_is_a_high_alarm_and_ends_when_the_link_returns(make_suite, watcher, tmp_path):
    suite, _ = start(make_suite, watcher, tmp_path)
    suite.sim("paging_base", "fault", silent=True)
    rec = wait_alarm(watcher, suite, "paging.link", 5, state="active")
    assert rec["priority"] == "high" and rec["kind"] == "technical"
    assert "Paging link down" in rec["message"]
    suite.sim("paging_base", "clear")
    wait_alarm(watcher, suite, "paging.link", 5, state="closed")
    suite.sim("paging_base", "unplug")  # the cable: the port itself goes away
    wait_alarm(watcher, suite, "paging.link", 5, state="active")
    suite.sim("paging_base", "plug")
    wait_alarm(watcher, suite, "paging.link", 8, state="closed")


def test_restart_during_an_outage_loses_no_page(make_suite, watcher, tmp_path):
    suite, daemon = start(make_suite, watcher, tmp_path, steps=(30, 30, 30))
    suite.sim("paging_base", "fault", silent=True)
    wait_alarm(watcher, suite, "paging.link", 5, state="active")
    suite.sim("bells", "press", room="uptake3", button="emergency", hold_s=0.05)
    # Unconfirmed pages move the ladder on at once: every step is told, each page waits in the queue.
    watcher.wait_for(lambda w: len(states(w, suite, "queued")) == 6, 10, what="pages of every step queued")
    assert [b["reason"] for _, b, _ in notifies(watcher, suite, AID)] == [
        "raised",
        "page_unconfirmed",
        "page_unconfirmed",
    ]
    daemon.kill9()
    suite.start_daemon(watcher, name="daemon2")
    suite.sim("paging_base", "clear")
    watcher.wait_for(lambda w: len(states(w, suite, "accepted")) == 6, 15, what="every queued page delivered")
    shown = suite.sim("paging_base", "shown")
    assert sorted(shown) == ["101", "102", "201", "2222"]
    assert len(shown["101"]) == 2 and len(shown["2222"]) == 1  # nurse1 is in steps 0 and 1; no page twice
    wait_alarm(watcher, suite, "paging.link", 5, state="closed")


def test_pages_queued_in_an_outage_are_cancelled_once_the_alarm_is_accepted(make_suite, watcher, tmp_path):
    suite, _ = start(make_suite, watcher, tmp_path)
    suite.sim("paging_base", "fault", silent=True)
    wait_alarm(watcher, suite, "paging.link", 5, state="active")
    suite.sim("bells", "press", room="uptake3", button="emergency", hold_s=0.05)
    watcher.wait_for(lambda w: len(states(w, suite, "queued")) >= 2, 10, what="pages queued")
    r = command(watcher, suite, "nurse1", "accept", alarm_id=AID)
    assert r["ok"], r
    queued = len(states(watcher, suite, "queued"))
    suite.sim("paging_base", "clear")
    watcher.wait_for(
        lambda w: len(states(w, suite, "cancelled")) == queued, 10, what="queued pages cancelled"
    )
    wait_alarm(watcher, suite, "paging.link", 5, state="closed")
    assert suite.sim("paging_base", "blocks_received") == []


@pytest.mark.slow  # a 20 s scenario played at 2x
def test_deterioration_paging_scenario(make_suite, watcher, tmp_path):
    from helpers import REPO

    suite, _ = start(make_suite, watcher, tmp_path, status_returned=True)
    failures = suite.play(REPO / "examples" / "scenarios" / "deterioration-paging.toml", watcher, speed=2.0)
    assert failures == []
    assert [b["step"] for _, b, _ in notifies(watcher, suite, AID)] == [
        0,
        1,
        2,
    ]  # accepted: no failsafe repeat
    shown = suite.sim("paging_base", "shown")
    assert "102" not in shown and shown["101"][0]["text"] == "HIGH Uptake 3 DETERIORATING call 2222"


def test_notify_payload_names_each_recipients_page_and_its_state(make_suite, watcher, tmp_path):
    # nurse2 has no call address: the same step pages nurse1 and tells nurse2 by notify/board only.
    addresses = {k: v for k, v in ADDRESSES.items() if k != "nurse2"}
    suite, _ = start(make_suite, watcher, tmp_path, recipients=addresses)
    suite.sim("bells", "press", room="uptake3", button="emergency", hold_s=0.05)
    watcher.wait_for(lambda w: notifies(w, suite, AID), 10, what="step-0 notification")
    role, body, _ = notifies(watcher, suite, AID)[0]
    assert role == "room_nurse" and body["recipients"] == ["nurse1", "nurse2"]
    page_id = f"{body['event_id']}/nurse1"
    assert body["delivery"] == [
        {
            "recipient": "nurse1",
            "channel": "espa444",
            "address": "101",
            "state": "queued",
            "page_id": page_id,
        },
        {"recipient": "nurse2", "channel": None, "address": None, "state": "none", "page_id": None},
    ]
    # A display joins the later delivery messages on page_id.
    watcher.wait_for(
        lambda w: any(d["page_id"] == page_id and d["state"] == "accepted" for d in deliveries(w, suite)),
        10,
        what="nurse1's page accepted",
    )
    assert {d["recipient"] for d in deliveries(watcher, suite) if d["step"] == 0} == {"nurse1"}
    # The journal's notification carries the same plan (the payload is a function of the event).
    ev = next(e for e in watcher.events(suite.site) if e["type"] == "alarm.notify")
    assert ev["data"]["delivery"] == body["delivery"]
