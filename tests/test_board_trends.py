"""The board's trends (issue 17 item 4) from MQTT messages alone: rings, gaps, levels, response times."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from suitemon.daemon.alarms import iso
from suitemon.daemon.board import views
from suitemon.daemon.board.config import BoardConfig
from suitemon.daemon.board.model import SuiteModel
from suitemon.daemon.board.trends import POINTS, STALE_AFTER_S, UPS_KEEP_S, WINDOW_S
from suitemon.daemon.config import parse_config

ROOT = "suitemon/s1"
HOTLAB = {"warning_usv_h": 7.5, "alarm_usv_h": 20.0}
UPTAKE = {"warning_usv_h": 60.0, "alarm_usv_h": 150.0}
CFG = parse_config(
    {
        # Berlin, not London: in November London is UTC, and "today" must be the site's day.
        "site": {"id": "s1", "name": "Site", "timezone": "Europe/Berlin"},
        "areas": {
            "uptake1": {"name": "Uptake 1", "kind": "uptake_room"},
            "hotlab": {"name": "Hot lab", "kind": "hot_lab"},
        },
        "radiation": {
            "areas": {
                "hotlab": {"normal": HOTLAB},
                "uptake1": {"normal": {"warning_usv_h": 7.5, "alarm_usv_h": 20.0}, "occupied": UPTAKE},
            }
        },
    }
)
START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock(START)


@pytest.fixture
def model(clock):
    m = SuiteModel(ROOT, clock=clock)
    m.on_broker(True)
    return m


def send(m, rel, obj):
    return m.on_message(f"{ROOT}/{rel}", json.dumps(obj).encode())


def monitor_state(t, rate, area="hotlab", comm="ok", stale=False, occupied_set=False):
    return {
        "device_id": "gamma",
        "kind": "area_monitor_modbus",
        "name": "Gamma",
        "location": area,
        "area": area,
        "ts": iso(t),
        "published_at": iso(t),
        "stale": stale,
        "comm": comm,
        "unit": "uSv/h",
        "dose_rate_usv_h": rate,
        "level": "normal",
        "thresholds": {"set": "occupied" if occupied_set else "normal", "warning_usv_h": 1, "alarm_usv_h": 2},
        "values": {"dose_rate_usv_h": rate},
    }


def ups_state(t, on_battery, charge, runtime, comm="ok", stale=False):
    return {
        "device_id": "ups",
        "kind": "ups_apc",
        "name": "Suite UPS",
        "ts": iso(t),
        "published_at": iso(t),
        "stale": stale,
        "comm": comm,
        "values": {"on_battery": on_battery, "charge_pct": charge, "runtime_s": runtime},
    }


def feed(model, clock, seconds, rate_of, every=1.0, **kw):
    t = clock.t
    end = t + seconds
    while t < end:
        clock.t = t
        send(model, "device/gamma/state", monitor_state(t, rate_of(t), **kw))
        t += every
    clock.t = end


def chart(model):
    (only,) = views.trends(model, CFG)["dose_rate"]
    return only


def test_the_ring_keeps_30_minutes_in_a_fixed_number_of_points_and_keeps_each_buckets_peak(model, clock):
    # 40 minutes at one sample a second, with a one-sample spike: far more samples than points.
    spike_at = START + 35 * 60 + 7
    feed(model, clock, 40 * 60, lambda t: 50.0 if t == spike_at else 1.0)
    c = chart(model)
    ring = model.trends.dose["gamma"].rate
    assert len(c["values"]) == POINTS and len(ring.buckets) <= POINTS
    assert c["step_s"] * POINTS == WINDOW_S
    assert datetime.fromisoformat(c["t0"]).timestamp() > clock.t - WINDOW_S - c["step_s"]
    assert max(v for v in c["values"] if v is not None) == 50.0  # the peak is not averaged away
    assert c["values"].count(50.0) == 1
    assert all(v is not None for v in c["values"][:-1])
    assert c["latest"] == {"value": 1.0, "at": iso(clock.t - 1), "current": True}
    assert len(json.dumps(c)) < 1500, "one chart's payload must stay small"


def test_comm_lost_and_stale_samples_are_gaps_never_joined(model, clock):
    # Lost from 135 s to 255 s: mid-bucket both times (30 s buckets from START).
    feed(model, clock, 135, lambda t: 2.0)
    feed(model, clock, 120, lambda t: 2.0, comm="lost", stale=True)
    feed(model, clock, 120, lambda t: 3.0)
    c = chart(model)
    drawn = [i for i, v in enumerate(c["values"]) if v is not None]
    lost = [i for i in range(drawn[0], drawn[-1]) if c["values"][i] is None]
    assert len(lost) == 3, c["values"]  # 150-240 s held no fresh sample at all
    assert lost == list(range(lost[0], lost[0] + 3))
    # The buckets where the loss began and ended hold fresh and lost samples: drawn alone, unjoined.
    assert c["broken"] == [lost[0] - 1, lost[-1] + 1]
    assert c["values"][lost[0] - 1] == 2.0 and c["values"][lost[-1] + 1] == 3.0


def test_a_value_past_its_age_is_never_shown_as_fresh(model, clock):
    # A retained state, "fresh" by its flags but ten minutes old (its daemon died): a gap.
    send(model, "device/gamma/state", monitor_state(clock.t - 600, 9.0))
    c = chart(model)
    assert all(v is None for v in c["values"])
    assert c["latest"]["current"] is False
    # A fresh reading, then silence: the latest turns not current after STALE_AFTER_S.
    send(model, "device/gamma/state", monitor_state(clock.t, 4.0))
    assert chart(model)["latest"] == {"value": 4.0, "at": iso(clock.t), "current": True}
    clock.t += STALE_AFTER_S + 1
    assert chart(model)["latest"]["current"] is False
    # A withheld (faulty) reading is a gap, not a zero.
    send(model, "device/gamma/state", monitor_state(clock.t, None))
    assert chart(model)["latest"] == {"value": None, "at": iso(clock.t), "current": False}


def test_levels_come_from_the_config_in_the_set_in_force(model, clock):
    send(model, "device/gamma/state", monitor_state(clock.t, 1.0))
    assert chart(model)["levels"] == {"warning": 7.5, "alarm": 20.0, "set": "normal", "source": "config"}
    send(model, "device/gamma/state", monitor_state(clock.t, 40.0, area="uptake1", occupied_set=True))
    assert chart(model)["levels"] == {"warning": 60.0, "alarm": 150.0, "set": "occupied", "source": "config"}
    assert chart(model)["area_name"] == "Uptake 1"
    # An area the config has no levels for: the levels the daemon publishes, marked as such.
    send(model, "device/gamma/state", monitor_state(clock.t, 1.0, area="elsewhere"))
    assert chart(model)["levels"] == {"warning": 1, "alarm": 2, "set": "normal", "source": "device"}


def test_trends_survive_a_broker_reconnect_and_the_outage_is_a_gap(model, clock):
    feed(model, clock, 60, lambda t: 2.0)
    model.on_broker(False)
    clock.t += 120
    model.on_broker(True)
    feed(model, clock, 60, lambda t: 2.0)
    values = chart(model)["values"]
    drawn = [i for i, v in enumerate(values) if v is not None]
    assert any(values[i] is None for i in range(drawn[0], drawn[-1]))
    assert len(drawn) >= 4


def accepted(alarm_id, raised_at, accepted_at, kind="clinical", occurrence=None, actor="nurse1"):
    return {
        "event_id": f"e-{alarm_id}-{accepted_at}",
        "type": "alarm.accepted",
        "ts": accepted_at,
        "actor": actor,
        "alarm_id": alarm_id,
        "data": {
            "alarm": {
                "alarm_id": alarm_id,
                "occurrence": occurrence or f"o-{alarm_id}-{raised_at}",
                "type": "bells." + alarm_id.rsplit(".", 1)[-1],
                "kind": kind,
                "location": "uptake1",
                "raised_at": raised_at,
            }
        },
    }


def test_todays_call_response_times_are_press_to_accept_in_site_time(clock):
    # The board started before the site's midnight (23:00 UTC = 00:00 Berlin), so the day is complete.
    clock.t = datetime(2026, 11, 25, 22, 0, tzinfo=UTC).timestamp()
    model = SuiteModel(ROOT, clock=clock)
    model.on_broker(True)
    clock.t = START
    # Yesterday in Berlin (22:30 UTC on the 25th = 23:30 local): not today.
    send(model, "event", accepted("bells.uptake1.call", "2026-11-25T22:29:00Z", "2026-11-25T22:30:00Z"))
    # Today in Berlin, though still the 25th in UTC (23:30 UTC = 00:30 local): today.
    send(model, "event", accepted("bells.uptake1.call", "2026-11-25T23:29:30Z", "2026-11-25T23:30:00Z"))
    press_accept = ("2026-11-26T09:00:00Z", "2026-11-26T09:00:42Z")
    ev = accepted("bells.uptake1.emergency", *press_accept)
    assert send(model, "event", ev) == {"trends"}
    assert send(model, "event", ev) == set()  # delivered twice (QoS 1): counted once
    send(
        model,
        "event",
        accepted("env.temperature.high", "2026-11-26T09:10:00Z", "2026-11-26T09:20:00Z", "technical"),
    )
    r = views.trends(model, CFG)["responses"]
    assert r["date"] == "2026-11-26" and r["complete"] is True
    assert r["count"] == 2
    assert [c["seconds"] for c in r["calls"]] == [30.0, 42.0]
    assert r["median_s"] == 36.0 and r["max_s"] == 42.0
    last = r["calls"][-1]
    assert last["pressed_at"] == iso(datetime(2026, 11, 26, 9, 0, tzinfo=UTC).timestamp())
    assert last["room_name"] == "Uptake 1" and last["accepted_by"] == "nurse1" and last["emergency"] is True


def test_response_times_say_when_they_are_incomplete_and_refuse_bad_times(model, clock):
    bad = accepted("bells.uptake1.call", "2026-11-26T09:05:00Z", "2026-11-26T09:00:00Z")
    assert send(model, "event", bad) == set()
    assert model.trends.bad_responses == 1
    r = views.trends(model, CFG)["responses"]
    assert r["count"] == 0 and r["median_s"] is None
    assert r["complete"] is False and r["since"] == iso(START)


def test_ups_chart_shows_on_battery_and_for_a_while_after_mains_returns(model, clock):
    send(model, "device/ups/state", ups_state(clock.t, False, 100.0, 1800))
    assert views.trends(model, CFG)["ups"] == []  # on mains: nothing to chart
    for i in range(10):
        clock.t += 5
        send(model, "device/ups/state", ups_state(clock.t, True, 99.0 - i, 1700 - 30 * i))
    (u,) = views.trends(model, CFG)["ups"]
    assert u["on_battery"] is True and u["battery_since"] == iso(START + 5)
    assert u["charge_pct"]["latest"]["value"] == 90.0
    assert min(v for v in u["runtime_s"]["values"] if v is not None) == 1430.0  # the worst kept
    # The UPS stops answering: a gap, and still "on battery" (lost is not "mains back").
    clock.t += 5
    send(model, "device/ups/state", ups_state(clock.t, False, None, None, comm="lost", stale=True))
    (u,) = views.trends(model, CFG)["ups"]
    assert u["on_battery"] is True and u["charge_pct"]["latest"]["current"] is False
    clock.t += 5
    send(model, "device/ups/state", ups_state(clock.t, False, 90.0, 1400))
    (u,) = views.trends(model, CFG)["ups"]
    assert u["on_battery"] is False and u["mains_back_at"] == iso(clock.t)
    clock.t += UPS_KEEP_S + 1
    assert views.trends(model, CFG)["ups"] == []


def test_malformed_device_states_are_not_charted_and_do_not_break_the_board(model, clock):
    send(model, "device/ups/state", ups_state(clock.t, True, 50.0, 600))
    clock.t += 1
    odd = {**ups_state(clock.t, True, 50.0, 600), "values": ["not", "an", "object"]}
    assert send(model, "device/ups/state", odd) == set()  # refused and counted: every view reads values
    assert model.bad_messages == 1
    views.all_sections(model, CFG, BoardConfig())  # the page still updates
    saying_nothing = {**ups_state(clock.t, True, None, None), "values": {"load_pct": 20}}
    send(model, "device/ups/state", saying_nothing)
    (u,) = views.trends(model, CFG)["ups"]
    assert u["on_battery"] is True, "a state that does not say where the power comes from changes nothing"
    assert u["charge_pct"]["latest"] == {"value": None, "at": iso(clock.t), "current": False}
    model.trends.ups.clear()
    bad_rate = {**monitor_state(clock.t, 1.0), "dose_rate_usv_h": "high", "values": "x", "units": 3}
    send(model, "device/gamma/state", bad_rate)
    t = views.trends(model, CFG)
    assert t["dose_rate"] == [] and t["ups"] == []
