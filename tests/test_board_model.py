"""The board's view of the suite, derived from MQTT messages alone (no browser, no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from suitemon.daemon.board import views
from suitemon.daemon.board.config import BoardConfig
from suitemon.daemon.board.model import SuiteModel
from suitemon.daemon.config import parse_config

ROOT = "suitemon/s1"
CFG = parse_config(
    {
        "site": {"id": "s1", "name": "Site", "timezone": "Europe/London"},
        "areas": {
            "uptake1": {"name": "Uptake 1", "kind": "uptake_room"},
            "uptake3": {"name": "Uptake 3", "kind": "uptake_room"},
            "hotlab": {"name": "Hot lab", "kind": "hot_lab"},
            "control": {"name": "Control", "kind": "control_room"},
            "scanner": {"name": "Scanner", "kind": "scanner_room"},
        },
        "roles": {"nurses": {"name": "Nurses", "recipients": ["nurse1"]}},
        "ladders": {"call": {"steps": [{"role": "nurses", "timeout_s": 60, "failsafe": True}]}},
    }
)
BOARD = BoardConfig(status_stale_s=12)


from suitemon.daemon.alarms import iso  # noqa: E402  (the daemon's own timestamp format)


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def model(clock):
    m = SuiteModel(ROOT, clock=clock)
    m.on_broker(True)
    return m


def send(m, rel, obj, retained=False):
    return m.on_message(f"{ROOT}/{rel}", b"" if obj is None else json.dumps(obj).encode(), retained)


def alarm(aid, priority="high", state="active", raised="2026-11-26T09:00:00Z", **kw):
    return {
        "alarm_id": aid,
        "occurrence": "o-" + aid,
        "type": kw.pop("type", "point.high"),
        "priority": priority,
        "kind": kw.pop("kind", "technical"),
        "latching": kw.pop("latching", False),
        "condition": kw.pop("condition", "present"),
        "state": state,
        "source": "x",
        "location": kw.pop("location", "hotlab"),
        "message": aid,
        "raised_at": raised,
        "updated_at": raised,
        "escalation": kw.pop("escalation", None),
        **kw,
    }


def test_alarms_are_ordered_by_priority_then_age_and_closed_or_cleared_ones_leave(model):
    send(model, "alarm/a.low", alarm("a.low", "low", raised="2026-11-26T08:00:00Z"))
    send(model, "alarm/b.high.new", alarm("b.high.new", "high", raised="2026-11-26T09:30:00Z"))
    send(model, "alarm/c.high.old", alarm("c.high.old", "high", raised="2026-11-26T09:00:00Z"))
    send(model, "alarm/d.medium", alarm("d.medium", "medium", state="acknowledged"))
    send(model, "alarm/e.closed", alarm("e.closed", "high", state="closed"))
    ids = [a["alarm_id"] for a in views.open_alarms(model, CFG)]
    assert ids == ["c.high.old", "b.high.new", "d.medium", "a.low"]
    assert send(model, "alarm/c.high.old", None) == {"alarms", "rooms", "health"}  # retained topic cleared
    assert "c.high.old" not in [a["alarm_id"] for a in views.open_alarms(model, CFG)]


@pytest.mark.parametrize(
    "record, actions",
    [
        (
            alarm(
                "x",
                escalation={
                    "ladder": "call",
                    "step": 0,
                    "role": "nurses",
                    "recipients": ["nurse1"],
                    "deadline": "2026-11-26T10:01:00Z",
                    "failsafe": True,
                    "accepted_by": None,
                },
            ),
            ["accept", "reject", "ack"],
        ),
        (
            alarm(
                "x",
                state="acknowledged",
                escalation={
                    "ladder": "call",
                    "step": 0,
                    "role": "nurses",
                    "recipients": [],
                    "accepted_by": "nurse1",
                },
            ),
            [],
        ),
        (alarm("x", latching=True, condition="absent", state="acknowledged"), ["reset"]),
        (alarm("x", latching=True, condition="present", state="acknowledged"), []),
        (alarm("x"), ["ack"]),
    ],
)
def test_offered_actions_follow_the_alarm_record(model, record, actions):
    send(model, "alarm/x", record)
    (a,) = views.open_alarms(model, CFG)
    assert a["actions"] == actions
    if a["escalation"]:
        assert a["escalation"]["role_name"] == "Nurses" and a["escalation"]["steps"] == 1


def test_room_tiles_show_call_occupancy_uptake_and_dose_rate(model, clock):
    send(
        model,
        "alarm/bells.uptake3.call",
        alarm("bells.uptake3.call", "medium", type="bell.call", kind="clinical", location="uptake3"),
    )
    send(
        model,
        "alarm/bells.uptake3.emergency",
        alarm("bells.uptake3.emergency", "high", type="bell.emergency", kind="clinical", location="uptake3"),
    )
    send(model, "alarm/rad3.comm_lost", alarm("rad3.comm_lost", "high", location="uptake3"))
    send(
        model,
        "event",
        {
            "type": "occupancy.changed",
            "actor": "dispenser",
            "event_id": "e1",
            "data": {"area": "uptake1", "occupied": True, "since": iso(clock.t - 600)},
        },
    )
    send(
        model,
        "uptake/uptake3",
        {"ts": iso(clock.t), "remaining_s": 1800, "occupied": True, "state": "uptake"},
    )
    send(
        model,
        "device/rad3/state",
        {
            "device_id": "rad3",
            "kind": "radmon",
            "location": "uptake3",
            "stale": False,
            "comm": "ok",
            "values": {"dose_rate_usv_h": 21.4},
            "ts": iso(clock.t),
        },
    )
    send(
        model,
        "device/rad1/state",
        {
            "device_id": "rad1",
            "kind": "radmon",
            "location": "uptake1",
            "stale": True,
            "comm": "lost",
            "values": {"dose_rate_usv_h": 0.1},
            "ts": iso(clock.t),
        },
    )
    alarms = views.open_alarms(model, CFG)
    rooms = {r["id"]: r for r in views.rooms(model, CFG, alarms)}
    assert list(rooms) == [
        "uptake1",
        "uptake3",
        "hotlab",
        "scanner",
    ]  # uptake rooms first; no control room tile
    r3 = rooms["uptake3"]
    assert r3["call"]["label"] == "EMERGENCY" and r3["call"]["priority"] == "high"
    assert r3["alarms"] == 3 and r3["technical"] == 1
    assert r3["occupied"] is True
    assert r3["uptake"]["due_at"] == iso(clock.t + 1800)
    assert r3["dose_rate"] == {
        "value": 21.4,
        "withheld": False,
        "unit": "µSv/h",
        "device": "rad3",
        "stale": False,
        "comm": "ok",
        "ts": iso(clock.t),
        "published_at": None,
    }
    r1 = rooms["uptake1"]
    assert r1["call"] is None and r1["occupied"] is True and r1["occupied_since"] == iso(clock.t - 600)
    assert r1["dose_rate"]["stale"] is True  # a lost monitor's last value is flagged, never shown as current
    assert rooms["hotlab"]["occupied"] is None and rooms["hotlab"]["uptake"] is None  # unknown, not "free"


def test_a_faulty_detectors_withheld_reading_is_never_shown_as_its_raw_value(model, clock):
    # The radiation rules publish dose_rate_usv_h: null while the detector reports a fault; the raw
    # number still sits in values. The tile must say there is no valid reading, not show that number.
    send(
        model,
        "device/rad3/state",
        {
            "device_id": "rad3",
            "kind": "radmon",
            "location": "uptake3",
            "stale": False,
            "comm": "ok",
            "dose_rate_usv_h": None,
            "thresholds": {"set": "normal", "warning_usv_h": 10.0, "alarm_usv_h": 25.0},
            "values": {"dose_rate_usv_h": 0.05, "fault": True},
            "ts": iso(clock.t),
        },
    )
    rooms = {r["id"]: r for r in views.rooms(model, CFG, views.open_alarms(model, CFG))}
    rate = rooms["uptake3"]["dose_rate"]
    assert rate["value"] is None and rate["withheld"] is True and rate["device"] == "rad3"


def test_health_needs_a_fresh_online_status(model, clock):
    assert model.daemon_state(12) == "unknown"
    send(model, "status", {"state": "online", "ts": iso(clock.t - 60)}, retained=True)
    assert model.daemon_state(12) == "stale"  # an old retained "online" is not believed
    send(model, "status", {"state": "online", "ts": iso(clock.t)})
    assert model.daemon_state(12) == "online"
    clock.t += 13
    assert model.daemon_state(12) == "stale"
    send(model, "status", {"state": "offline", "reason": "connection lost", "ts": iso(clock.t)})
    assert model.daemon_state(12) == "offline"
    h = views.health(model, BOARD)
    assert h["daemon"] == "offline" and h["reason"] == "connection lost"


def test_losing_the_broker_makes_everything_unknown_and_a_reconnect_starts_from_retained_topics(model, clock):
    send(model, "status", {"state": "online", "ts": iso(clock.t)})
    send(model, "alarm/a", alarm("a"))
    assert model.on_broker(False)
    assert model.daemon_state(12) == "unknown"
    assert views.health(model, BOARD)["broker"] == "disconnected"
    model.on_broker(True)
    assert views.open_alarms(model, CFG) == []  # closed while we were away? only the broker can say
    assert model.daemon_state(12) == "unknown"


def test_bad_payloads_are_counted_and_ignored(model):
    assert send(model, "alarm/a", alarm("a"))
    assert model.on_message(f"{ROOT}/alarm/a", b"{not json") == set()
    assert model.on_message(f"{ROOT}/device/x/state", b"[1, 2]") == set()
    assert model.on_message(f"{ROOT}/alarm/b", b"\xff\xfe") == set()
    assert model.bad_messages == 3
    assert [a["alarm_id"] for a in views.open_alarms(model, CFG)] == ["a"]
    assert model.on_message("suitemon/other-site/alarm/z", json.dumps(alarm("z")).encode()) == set()


def test_power_reads_mains_from_a_fresh_ups_only_and_shutdown_progress_from_its_steps(model, clock):
    assert views.power(model, CFG)["mains"] == "unknown"
    ups = {
        "device_id": "ups",
        "kind": "ups_apc",
        "stale": False,
        "comm": "ok",
        "values": {"on_battery": True, "runtime_s": 400, "charge_pct": 80.0, "status": {"online": False}},
    }
    send(model, "device/ups/state", ups)
    p = views.power(model, CFG)
    assert p["mains"] == "battery" and p["ups"][0]["values"] == {
        "on_battery": True,
        "runtime_s": 400,
        "charge_pct": 80.0,
    }
    send(model, "device/ups/state", {**ups, "stale": True, "comm": "lost"})
    assert views.power(model, CFG)["mains"] == "unknown"
    send(model, "device/ups/state", {**ups, "values": {"on_battery": False}})
    assert views.power(model, CFG)["mains"] == "mains"
    # A battery calibration runs on battery with mains present: not "mains failed" on the nurses' board.
    send(model, "device/ups/state", {**ups, "power": "calibration"})
    assert views.power(model, CFG)["mains"] == "mains"
    send(
        model,
        "shutdown/state",
        {
            "state": "running",
            "steps": [{"name": "recon", "state": "done"}, {"name": "console", "state": "running"}, "gantry"],
        },
    )
    sd = views.power(model, CFG)["shutdown"]
    assert (sd["state"], sd["active"], sd["done"], sd["total"]) == ("running", True, 1, 3)
    assert sd["steps"][2] == {"name": "gantry", "state": "pending"}
    send(
        model, "shutdown/state", {"phase": "idle", "hosts": {"recon": {"state": "ready"}, "console": "ready"}}
    )
    sd = views.power(model, CFG)["shutdown"]
    assert (sd["state"], sd["active"], sd["done"], sd["total"]) == ("idle", False, 2, 2)
    # The sequencer's own shape (docs/shutdown.md): a finished sequence is history, not active.
    for phase, active in (("running", True), ("aborting", True), ("completed", False), ("aborted", False)):
        send(
            model,
            "shutdown/state",
            {
                "phase": phase,
                "armed": False,
                "steps": [{"id": "scanner_stop", "status": "done"}, {"id": "ups", "status": "pending"}],
            },
        )
        sd = views.power(model, CFG)["shutdown"]
        assert (sd["state"], sd["active"], sd["done"], sd["total"]) == (phase, active, 1, 2)


def administration(rid, at, given=350.0, prescribed=350.0, room="uptake1", assayed=None):
    ok = abs(given - prescribed) <= 0.10 * prescribed
    return {
        "record_id": rid,
        "patient_ref": "P-SECRET-1",
        "room": room,
        "radiopharmaceutical": "FDG",
        "radionuclide": "F-18",
        "prescribed_mbq": prescribed,
        # The assay at calibration time is higher than what reaches the patient minutes later.
        "measured_mbq": assayed if assayed is not None else given,
        "administered_mbq": given,
        "checks": [{"check": "tolerance", "ok": ok, "priority": "medium", "message": "m"}],
        "administered_at": at,
        "device": "disp",
        "job": 1,
    }


def test_todays_dose_summary_counts_each_record_once_and_says_when_it_is_incomplete(clock):
    before_midnight = datetime(2026, 11, 25, 20, 0, tzinfo=UTC).timestamp()
    model = SuiteModel(ROOT, clock=Clock(before_midnight))
    model.clock = clock
    model.on_broker(True)
    today = iso(clock.t - 3600)
    send(model, "event", {"type": "dose.administered", "event_id": "e1", "data": administration("r1", today)})
    send(model, "dose/administration", administration("r1", today))  # the same record again
    # Assayed 15 min before injection: ~10 % above the prescription, yet in tolerance at injection.
    send(
        model,
        "dose/administration",
        {"event_id": "e4", "data": administration("r4", today, 350.0, 350.0, "uptake2", assayed=385.0)},
    )
    send(
        model,
        "dose/administration",
        {"event_id": "e2", "data": administration("r2", today, 420.0, 350.0, "uptake3")},
    )
    send(
        model,
        "event",
        {"type": "dose.administered", "event_id": "e3", "data": administration("r3", iso(clock.t - 86400))},
    )  # yesterday
    d = views.dose(model, CFG)
    assert (d["count"], d["total_mbq"], d["outside_tolerance"]) == (3, 1120.0, 1)
    assert d["by_radiopharmaceutical"] == {"FDG": {"count": 3, "total_mbq": 1120.0}}
    assert d["complete"] is True and d["date"] == "2026-11-26"
    assert "P-SECRET-1" not in json.dumps(
        views.all_sections(model, CFG, BOARD)
    )  # no patient reference on the page
    model.on_broker(False)
    model.on_broker(True)
    assert views.dose(model, CFG)["complete"] is False  # events during the outage may be missing

    late = SuiteModel(ROOT, clock=clock)
    assert views.dose(late, CFG)["complete"] is False and views.dose(late, CFG)["since"] == iso(clock.t)


def test_uptake_due_time_from_start_and_duration():
    start = "2026-11-26T09:00:00Z"
    up = views.uptake_view({"started_at": start, "uptake_s": 3600})
    assert up["due_at"].startswith("2026-11-26T10:00:00")
    assert views.uptake_view({"due_at": "2026-11-26T10:05:00Z"})["due_at"] == "2026-11-26T10:05:00Z"
    assert views.uptake_view(None) is None
    assert views.uptake_view({"state": "waiting"})["due_at"] is None


def test_board_config_defaults_are_safe():
    b = BoardConfig()
    assert b.bind == "127.0.0.1" and b.users == {} and b.bell_test_verb == "bell_test"
    cfg = parse_config(
        {
            "site": {"id": "s1", "name": "S"},
            "board": {
                "port": 9000,
                "users": {"station1": {"name": "Station", "kind": "station", "mqtt_username": "st1"}},
            },
        }
    )
    assert cfg.board.actor_of("station1") == "st1"
    from suitemon.daemon.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config({"site": {"id": "s1", "name": "S"}, "board": {"prot": 1, "bell_test_verb": "Bell Test"}})
    paths = {i.path for i in err.value.issues}
    assert {"board.prot", "board.bell_test_verb"} <= paths


def test_payload_shapes_of_the_feature_topics(model, clock):
    """The shapes the dispenser, radiation and DICOM features publish (their schemas on their branches)."""
    today = iso(clock.t - 1800)
    send(
        model,
        "dose/administration",
        {
            "event_id": "e9",
            "ts": today,
            "site": "s1",
            "record": administration("r9", today, 300.0, 300.0, "uptake3"),
        },
    )
    send(
        model,
        "dose/summary",
        {
            "event_id": "e10",
            "ts": iso(clock.t),
            "site": "s1",
            "date": "2026-11-26",
            "administrations": 4,
            "total_administered_mbq": 1400.0,
            "records_lost": 0,
            "administrations_with_failed_checks": 1,
        },
    )
    send(
        model,
        "dose/study",
        {
            "event_id": "e11",
            "ts": today,
            "study_uid": "1.2.3",
            "room": "scanner",
            "ct": {"dlp_total_mgycm": 410.5, "status": "ok"},
        },
    )
    send(
        model,
        "uptake/uptake3",
        {
            "room": "uptake3",
            "published_at": iso(clock.t),
            "state": "ready",
            "administered_at": today,
            "ready_at": iso(clock.t - 10),
            "remaining_s": 0,
        },
    )
    send(
        model,
        "device/rad-u3/state",
        {
            "device_id": "rad-u3",
            "kind": "area_monitor_modbus",
            "location": "control",
            "area": "uptake3",
            "dose_rate_usv_h": 14.31,
            "unit": "uSv/h",
            "stale": False,
            "comm": "ok",
            "values": {},
        },
    )
    d = views.dose(model, CFG)
    assert (d["count"], d["total_mbq"], d["studies"], d["ct_dlp_total"]) == (1, 300.0, 1, 410.5)
    assert d["summary"] == {
        "ts": iso(clock.t),
        "administrations": 4,
        "total_mbq": 1400.0,
        "records_lost": 0,
        "with_failed_checks": 1,
    }
    r3 = {r["id"]: r for r in views.rooms(model, CFG, [])}["uptake3"]
    assert r3["uptake"]["state"] == "ready" and r3["uptake"]["due_at"] == iso(clock.t - 10)
    assert r3["dose_rate"]["value"] == 14.31 and r3["dose_rate"]["unit"] == "µSv/h"


def test_each_page_of_an_alarm_shows_its_newest_delivery_state(model):
    send(model, "alarm/x", alarm("x"))

    def delivery(seq, recipient, state, step=0, channel="espa444"):
        return {
            "event_id": f"e{seq}",
            "seq": seq,
            "ts": "2026-11-26T09:00:01Z",
            "site": "s1",
            "type": "paging.delivery",
            "actor": "system",
            "alarm_id": None,
            "data": {
                "page_id": f"n1/{recipient}",
                "occurrence": "o-x",
                "alarm_id": "x",
                "recipient": recipient,
                "channel": channel,
                "state": state,
                "reason": "NAK" if state == "failed" else None,
                "step": step,
            },
        }

    assert send(model, "event", delivery(5, "nurse2", "queued")) == {"alarms"}
    send(model, "event", delivery(6, "nurse1", "queued"))
    send(model, "event", delivery(8, "nurse1", "failed"))
    send(model, "event", delivery(7, "nurse1", "queued"))  # an older event again (at-least-once): ignored
    send(model, "event", delivery(9, "rps", "accepted", step=1, channel="apprise"))
    (a,) = views.open_alarms(model, CFG)
    assert [(d["recipient"], d["state"], d["channel"]) for d in a["deliveries"]] == [
        ("nurse1", "failed", "espa444"),
        ("nurse2", "queued", "espa444"),
        ("rps", "accepted", "apprise"),
    ]


def test_a_recipient_without_pager_shows_as_board_only(model):
    send(model, "alarm/x", alarm("x"))
    notify = {
        "event_id": "n1",
        "seq": 4,
        "ts": "2026-11-26T09:00:00Z",
        "site": "s1",
        "type": "alarm.notify",
        "actor": "system",
        "alarm_id": "x",
        "data": {
            "alarm": {"alarm_id": "x", "occurrence": "o-x"},
            "step": 0,
            "role": "room_nurse",
            "recipients": ["nurse1", "nurse2"],
            "reason": "raised",
            "delivery": [
                {
                    "recipient": "nurse1",
                    "channel": "espa444",
                    "address": "101",
                    "state": "queued",
                    "page_id": "n1/nurse1",
                },
                {"recipient": "nurse2", "channel": None, "address": None, "state": "none", "page_id": None},
            ],
        },
    }
    assert send(model, "event", notify) == {"alarms"}
    (a,) = views.open_alarms(model, CFG)
    assert [(d["recipient"], d["state"], d["channel"]) for d in a["deliveries"]] == [("nurse2", "none", None)]
