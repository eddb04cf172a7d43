"""Who may send which command (issue 15, item 1), and each command once (item 4).

Probes: a nurse's, a display's and the board's own accounts send safety-relevant verbs they
were never granted; a grant limited to areas is used for another area; a dose record is sent
twice with one request_id, and again after a restart. Real broker, real daemon process.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

from conftest import events_of
from dicom_helpers import dicom_section
from helpers import REPO

ROLES = {
    "ward": {"name": "Ward nurses", "members": ["nurse7"], "commands": ["ack"]},
    "injector": {
        "name": "Injecting nurse",
        "members": ["nurse8"],
        "commands": ["occupancy"],
        "areas": ["uptake1"],
    },
    "physics": {"name": "Physics", "members": ["rps"], "commands": ["occupancy", "dose-record"]},
}


def authority_suite(make_suite, extra=None):
    suite = make_suite({}, extra)
    roles = {k: v for k, v in suite.data["roles"].items() if k != "operators"}  # no blanket test grant
    suite.data["roles"] = {**roles, **copy.deepcopy(ROLES)}
    suite.write()
    return suite


def send(watcher, suite, actor, verb, body, rid):
    """Publish cmd/<actor>/<verb> and return the daemon's reply (the first one with this rid)."""
    watcher.publish(suite.topic("cmd", actor, verb), {**body, "request_id": rid})
    return reply_for(watcher, suite, actor, rid)


def reply_for(watcher, suite, actor, rid, nth=1):
    t = suite.topic("reply", actor)

    def got(w):
        found = [r for top, p, *_ in w.messages if top == t and (r := json.loads(p)).get("request_id") == rid]
        return found[nth - 1] if len(found) >= nth else None

    return watcher.wait_for(got, 10, what=f"reply {nth} to {actor} {rid}")


def test_verbs_are_refused_unless_a_role_grants_them_and_each_refusal_names_its_rule(make_suite, watcher):
    suite = authority_suite(make_suite)
    suite.start_daemon(watcher)
    occupy = {"area": "uptake1", "occupied": True, "activity_mbq": 350.0}

    # A nurse whose role grants only "ack" raises a room's radiation alarm level: refused.
    r = send(watcher, suite, "nurse7", "occupancy", occupy, "a1")
    assert not r["ok"] and "grants 'occupancy'" in r["error"], r
    # A ladder recipient without a grant may not close alarms either.
    r = send(watcher, suite, "nurse1", "reset", {"alarm_id": "x.y"}, "a2")
    assert not r["ok"] and "no role of 'nurse1'" in r["error"], r
    # Displays and the board's own account hold no role: nothing at all, not even status.
    for actor, verb in (("display1", "occupancy"), ("board", "ack"), ("display1", "status")):
        r = send(
            watcher, suite, actor, verb, occupy if verb == "occupancy" else {"alarm_id": "x"}, f"b-{verb}"
        )
        assert not r["ok"] and "may send no commands" in r["error"], r
    # An area-limited grant holds in its area only.
    r = send(watcher, suite, "nurse8", "occupancy", {**occupy, "area": "hotlab"}, "c1")
    assert not r["ok"] and "only in areas uptake1, not in 'hotlab'" in r["error"], r
    assert send(watcher, suite, "nurse8", "occupancy", occupy, "c2")["ok"]
    assert send(watcher, suite, "rps", "occupancy", {**occupy, "area": "hotlab"}, "c3")["ok"]
    # Read verbs need a role, not a grant.
    assert send(watcher, suite, "nurse7", "status", {}, "d1")["ok"]

    rejected = watcher.wait_for(
        lambda w: len(x := events_of(w, suite.site, "command.rejected")) >= 6 and x, 10
    )
    rules = {(e["actor"], e["data"]["verb"]): e["data"]["rule"] for e in rejected}
    assert rules == {
        ("nurse7", "occupancy"): "default-deny",
        ("nurse1", "reset"): "default-deny",
        ("display1", "occupancy"): "no-role",
        ("board", "ack"): "no-role",
        ("display1", "status"): "no-role",
        ("nurse8", "occupancy"): "roles.injector.areas",
    }
    changed = watcher.wait_for(
        lambda w: len(x := events_of(w, suite.site, "occupancy.changed")) >= 2 and x, 10
    )
    assert sorted((e["actor"], e["data"]["area"]) for e in changed) == [
        ("nurse8", "uptake1"),
        ("rps", "hotlab"),
    ]


def test_check_config_prints_who_may_send_what(make_suite):
    suite = authority_suite(make_suite)
    r = subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", "check-config", str(suite.path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "any other account may send nothing (default deny)" in out
    lines = out.splitlines()
    may = {
        lines[i - 1].split()[0]: line.split("may:", 1)[1].split()
        for i, line in enumerate(lines)
        if "may:" in line
    }
    assert may["nurse8"] == ["deteriorate", "dose_summary", "occupancy[uptake1]", "status"]
    assert may["nurse7"] == ["ack", "deteriorate", "dose_summary", "status"]
    assert may["nurse1"] == ["deteriorate", "dose_summary", "status"]  # a recipient, granted nothing
    assert "board" not in may and "display1" not in may


def test_config_rejects_grants_of_unknown_verbs_and_areas(make_suite):
    suite = authority_suite(make_suite)
    suite.data["roles"]["ward"]["commands"] = ["ack", "acks"]
    suite.data["roles"]["injector"]["areas"] = ["uptake9"]
    suite.write()
    r = subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", "check-config", str(suite.path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 2
    assert "roles.ward.commands.1: unknown command 'acks'" in r.stderr
    assert "roles.injector.areas.0: unknown area 'uptake9'" in r.stderr


DOSE = {
    "room": "uptake1",
    "measured_mbq": 352.0,
    "prescribed_mbq": 350.0,
    "administered_at": "2026-01-05T09:00:00Z",
    "accession": "ONCE1",
}


def test_a_resent_command_is_answered_with_its_first_result_even_after_a_restart(make_suite, watcher):
    suite = authority_suite(make_suite, dicom_section())
    daemon = suite.start_daemon(watcher)
    first = send(watcher, suite, "rps", "dose-record", DOSE, "dbl-1")
    assert first["ok"], first
    # A double click / redelivery: same request_id, the first answer, no second administration.
    watcher.publish(suite.topic("cmd", "rps", "dose-record"), {**DOSE, "request_id": "dbl-1"})
    second = reply_for(watcher, suite, "rps", "dbl-1", nth=2)
    assert second["ok"] and second["repeated"] is True and second["result"] == first["result"]
    # The same id for another verb is refused, not taken for the first command.
    watcher.publish(
        suite.topic("cmd", "rps", "occupancy"), {"area": "uptake1", "occupied": False, "request_id": "dbl-1"}
    )
    r = reply_for(watcher, suite, "rps", "dbl-1", nth=3)
    assert r["verb"] == "occupancy" and not r["ok"] and "already used for 'dose-record'" in r["error"], r
    assert daemon.terminate() == 0
    suite.start_daemon(watcher, name="daemon2")
    watcher.publish(suite.topic("cmd", "rps", "dose-record"), {**DOSE, "request_id": "dbl-1"})
    third = reply_for(watcher, suite, "rps", "dbl-1", nth=4)
    assert third["ok"] and third["repeated"] is True and third["result"] == first["result"]
    fresh = send(watcher, suite, "rps", "dose-record", {**DOSE, "accession": "ONCE2"}, "dbl-2")
    assert fresh["ok"] and fresh["result"] != first["result"]
    administered = {e["event_id"] for e in events_of(watcher, suite.site, "dose.administered")}
    assert len(administered) == 2, administered
    accepted = events_of(watcher, suite.site, "command.accepted")
    assert {(e["actor"], e["data"]["request_id"], e["data"]["verb"]) for e in accepted} == {
        ("rps", "dbl-1", "dose-record"),
        ("rps", "dbl-2", "dose-record"),
    }
