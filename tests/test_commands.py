"""Commands over MQTT: good ones act and are journaled with the topic's actor; bad ones are
rejected with a reply and an event, counted, and the daemon keeps running."""

from __future__ import annotations

import json

from helpers import free_port


def suite_with_alarm(make_suite, watcher):
    suite = make_suite(
        {
            "env": {
                "kind": "modbus_points",
                "transport": "tcp",
                "host": "127.0.0.1",
                "port": free_port(),
                "poll_s": 0.1,
                "timeout_s": 0.1,
                "sim": {"drift": False},
                "limits": {"temperature": {"high": 28.0, "priority": "low"}},
            }
        }
    )
    suite.start_sims()
    daemon = suite.start_daemon(watcher)
    suite.sim("env", "set", temperature=30.0)
    watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", "env.temperature.high"))) and a["state"] == "active"
    )
    return suite, daemon


def replies(w, suite, actor):
    return [json.loads(p) for t, p, *_ in w.messages if t == suite.topic("reply", actor)]


def test_ack_names_the_actor_from_the_topic(make_suite, watcher):
    suite, _ = suite_with_alarm(make_suite, watcher)
    watcher.publish(
        suite.topic("cmd", "nurse1", "ack"),
        {"alarm_id": "env.temperature.high", "request_id": "r1", "actor": "someone-else"},
    )
    r = watcher.wait_for(lambda w: (x := replies(w, suite, "nurse1")) and x[-1], what="reply")
    assert r["ok"] and r["request_id"] == "r1" and r["result"]["type"] == "alarm.acknowledged"
    a = watcher.json_of(suite.topic("alarm", "env.temperature.high"))
    assert a["state"] == "acknowledged" and a["acknowledged_by"] == "nurse1"
    ev = watcher.wait_for(lambda w: [e for e in w.events(suite.site) if e["type"] == "alarm.acknowledged"])
    assert ev[0]["actor"] == "nurse1"


def test_bad_commands_are_rejected_counted_and_survived(make_suite, watcher):
    suite, daemon = suite_with_alarm(make_suite, watcher)
    cases = [
        ("ack", b"not json", "not JSON"),
        ("ack", b"[1, 2]", "must be a JSON object"),
        ("ack", b"{}", "missing field(s): alarm_id"),
        ("ack", b'{"alarm_id": 5}', "alarm_id must be a string"),
        ("ack", b'{"alarm_id": "no.such"}', "no open alarm"),
        ("frobnicate", b"{}", "unknown command"),
        ("reset", b'{"alarm_id": "env.temperature.high"}', "still present"),
        ("ack", b"\xff\xfe\x00garbage", "not JSON"),
    ]
    for _i, (verb, payload, _) in enumerate(cases):
        watcher.client.publish(suite.topic("cmd", "nurse2", verb), payload, qos=1).wait_for_publish(5)
    got = watcher.wait_for(
        lambda w: len(x := replies(w, suite, "nurse2")) >= len(cases) and x,
        what="a reply to each bad command",
    )
    for (verb, _, expected), reply in zip(cases, got, strict=True):
        assert reply["ok"] is False and expected in reply["error"], (verb, reply)
    rejected = watcher.wait_for(
        lambda w: (
            len(x := [e for e in w.events(suite.site) if e["type"] == "command.rejected"]) >= len(cases) and x
        )
    )
    assert {e["actor"] for e in rejected} == {"nurse2"}
    # Still alive and still working:
    watcher.publish(suite.topic("cmd", "nurse2", "ack"), {"alarm_id": "env.temperature.high"})
    watcher.wait_for(
        lambda w: w.json_of(suite.topic("alarm", "env.temperature.high"))["state"] == "acknowledged"
    )
    assert daemon.alive()
    status = watcher.wait_for(
        lambda w: (
            (s := w.json_of(suite.topic("status")))
            and s.get("counters", {}).get("commands.rejected", 0) >= len(cases)
            and s
        ),
        timeout=15,
        what="rejection counter in status",
    )
    assert status["counters"]["commands.rejected"] == len(cases)


def test_correction_needs_a_reason_and_references_the_original(make_suite, watcher):
    suite, _ = suite_with_alarm(make_suite, watcher)
    raised = watcher.wait_for(lambda w: [e for e in w.events(suite.site) if e["type"] == "alarm.raised"])[0]
    watcher.publish(suite.topic("cmd", "rps", "correct"), {"event_id": raised["event_id"], "reason": ""})
    watcher.publish(
        suite.topic("cmd", "rps", "correct"),
        {"event_id": raised["event_id"], "reason": "sensor was being serviced", "data": {"valid": False}},
    )
    got = watcher.wait_for(lambda w: len(x := replies(w, suite, "rps")) >= 2 and x)
    assert not got[0]["ok"] and "needs a reason" in got[0]["error"]
    assert got[1]["ok"]
    corr = watcher.wait_for(lambda w: [e for e in w.events(suite.site) if e["type"] == "record.correction"])[
        0
    ]
    assert corr["refers_to"] == raised["event_id"] and corr["actor"] == "rps"
    assert corr["data"]["reason"] == "sensor was being serviced"
