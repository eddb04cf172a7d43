"""Area radiation rules on synthetic reading times: delay, hysteresis, occupancy, spills, zero, daily dose."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from helpers import REPO

from suitemon.daemon.alarms import iso
from suitemon.daemon.config import ConfigError, parse_config
from suitemon.daemon.facts import Facts
from suitemon.daemon.radiation.logic import DailyDose, LevelTracker, RiseDetector, ZeroWatch
from suitemon.daemon.radiation.rules import RadiationRules
from suitemon.drivers.base import Reading
from suitemon.drivers.radiation import RiseRule, patient_dose_rate
from suitemon.simulators.radiation_model import AreaModel, poisson

T0 = 1_750_000_000.0


# -- level tracker ---------------------------------------------------------------------
def run_levels(samples, level=10.0, band=1.0, delay=5.0, dt=1.0):
    tr, states = LevelTracker(), []
    for i, v in enumerate(samples):
        states.append(tr.update(T0 + i * dt, v, level, band, delay))
    return states


def test_level_waits_for_the_delay_measured_on_reading_times():
    states = run_levels([12.0] * 8)
    assert states.index(True) == 5  # readings at 0..5 s: above for 5 s of reading time


def test_a_short_excursion_shorter_than_the_delay_raises_nothing():
    assert not any(run_levels([2, 12, 12, 12, 2, 2, 12, 12, 2, 2]))


def test_dips_inside_the_band_do_not_restart_the_delay():
    # 9.5 is below the level but inside the band (9..10): the condition is still pending.
    states = run_levels([12, 9.5, 12, 9.5, 12, 9.5, 12])
    assert states.index(True) == 5


def test_no_chatter_around_the_level_and_clear_below_the_band():
    wobble = [10.5, 9.2, 10.8, 9.1, 10.2, 9.4] * 5  # around the level, inside the band
    states = run_levels([12] * 6 + wobble + [8.9, 8.9])
    raised = [i for i in range(1, len(states)) if states[i] and not states[i - 1]]
    cleared = [i for i in range(1, len(states)) if states[i - 1] and not states[i]]
    assert raised == [5] and cleared == [len(states) - 2]


def test_zero_delay_raises_on_the_first_reading_above():
    assert run_levels([5, 11], delay=0.0) == [False, True]


# -- zero watch ---------------------------------------------------------------------------
def test_zero_for_longer_than_the_limit_is_a_fault_and_any_count_resets_it():
    z = ZeroWatch(10.0)
    assert [z.update(T0 + t, True) for t in (0, 5, 9.9, 10)] == [False, False, False, True]
    assert z.update(T0 + 11, False) is False and z.since is None
    assert z.update(T0 + 12, True) is False


# -- rise detector -------------------------------------------------------------------------
RULE = RiseRule(rise_usv_h=2.0, factor=2.0, window_s=20.0, confirm_s=4.0, min_baseline_readings=3)


def feed(det, values, start=0.0, dt=2.0, explains=lambda t, v: None):
    return [det.update(T0 + start + i * dt, v, explains) for i, v in enumerate(values)]


def test_step_rise_held_for_the_confirm_time_is_a_suspected_spill():
    det = RiseDetector(RULE)
    states = feed(det, [0.1, 0.12, 0.09, 0.11, 15.0, 15.2, 14.9, 15.1])
    assert states.index(True) == 6  # step at reading 4, confirmed 4 s later
    assert det.spill.baseline == pytest.approx(0.105, abs=0.01) and det.spill.level == pytest.approx(14.9)


def test_a_single_spike_is_not_a_spill():
    det = RiseDetector(RULE)
    assert not any(feed(det, [0.1, 0.1, 0.1, 0.1, 20.0, 0.1, 0.1, 0.1, 0.1]))


def test_a_step_the_occupancy_explains_becomes_the_new_baseline():
    det = RiseDetector(RULE)
    why = []
    states = feed(det, [0.1] * 4 + [30.0] * 20, explains=lambda t, v: why.append((t, v)) or "patient arrived")
    assert not any(states) and len(why) == 1 and det.explained == 1


def test_a_spill_stays_present_until_the_rate_is_back_near_the_old_baseline():
    det = RiseDetector(RULE)
    states = feed(det, [0.1] * 4 + [6.0] * 20 + [1.5, 0.2])
    assert states[-3] is True  # 20 readings (40 s > window) later it is still a spill, not a new baseline
    assert states[-2] is True  # 1.5 is above the old baseline + half a step (0.1 + 1.0)
    assert states[-1] is False


def test_no_baseline_no_detection():
    det = RiseDetector(RULE)
    assert not any(feed(det, [0.1, 20.0, 20.0, 20.0]))  # one reading is no baseline


# -- daily dose -----------------------------------------------------------------------------
LONDON = ZoneInfo("Europe/London")


def test_constant_rate_for_an_hour_is_that_many_microsieverts():
    d = DailyDose(LONDON, max_gap_s=10)
    start = datetime(2025, 3, 10, 9, 0, tzinfo=LONDON).timestamp()
    for i in range(0, 3601, 2):
        d.add(start + i, 2.0)
    s = d.summary()
    assert s["usv"] == pytest.approx(2.0) and s["complete"] and s["day"] == "2025-03-10"


def test_gaps_and_faulted_readings_make_the_day_incomplete_not_filled_in():
    d = DailyDose(LONDON, max_gap_s=10)
    start = datetime(2025, 3, 10, 9, 0, tzinfo=LONDON).timestamp()
    d.add(start, 1.0)
    d.add(start + 2, 1.0)
    d.add(start + 100, 1.0)  # 98 s gap: not integrated
    assert d.usv == pytest.approx(2 / 3600) and not d.summary()["complete"]
    d2 = DailyDose(LONDON, max_gap_s=10)
    d2.add(start, 1.0)
    d2.add(start + 2, None)
    assert not d2.summary()["complete"]


def test_local_midnight_splits_the_interval_and_keeps_yesterday():
    d = DailyDose(LONDON, max_gap_s=10)
    midnight = datetime(2025, 7, 1, 0, 0, tzinfo=LONDON).timestamp()  # BST: 23:00 UTC
    d.add(midnight - 4, 3600.0)  # 1 uSv per second: easy sums
    d.add(midnight + 4, 3600.0)
    assert d.summary()["day"] == "2025-07-01" and d.summary()["usv"] == pytest.approx(4.0)
    assert d.previous["day"] == "2025-06-30" and d.previous["usv"] == pytest.approx(4.0)
    assert d.summary()["since"] == iso(midnight)


def test_over_range_makes_the_figure_a_lower_bound():
    d = DailyDose(UTC, max_gap_s=10)
    d.add(T0, 100.0)
    d.add(T0 + 2, 100.0, over_range=True)
    assert d.summary()["lower_bound"] is True


# -- the rules with a real config and real facts --------------------------------------------
def make_rules(**area):
    rad = {
        "normal": {"warning_usv_h": 7.5, "alarm_usv_h": 20.0, "hysteresis_usv_h": 1.0},
        "occupied": {"warning_usv_h": 60.0, "alarm_usv_h": 150.0, "hysteresis_usv_h": 5.0},
        "alarm_delay_s": 4.0,
        "zero_fault_s": 10.0,
        "rise": {"rise_usv_h": 2.0, "window_s": 20.0, "confirm_s": 4.0, "occupancy_grace_s": 30.0},
    } | area
    cfg = parse_config(
        {
            "site": {"id": "t", "name": "t"},
            "areas": {"uptake1": {"name": "Uptake 1", "kind": "uptake_room"}},
            "radiation": {"areas": {"uptake1": rad}},
            "devices": {"mon": {"kind": "area_monitor_modbus", "location": "uptake1", "transport": "tcp"}},
        }
    )
    ctx = SimpleNamespace(cfg=cfg, facts=Facts(), runners={})
    return RadiationRules("mon", cfg.devices["mon"], ctx), ctx


def reading(t, rate, **flags):
    values = {
        "dose_rate_usv_h": rate,
        "over_range": False,
        "detector_fault": False,
        "fault_reason": None,
    } | flags
    return Reading("mon", values, at=t, mono=t)


def present(out) -> set[str]:
    return {c.alarm_id for c in out if c.present}


def occupy(ctx, occupied, since, activity=None):
    ctx.facts.set(
        "occupancy",
        "uptake1",
        {
            "occupied": occupied,
            "since": iso(since),
            "activity_mbq": activity,
            "administered_at": iso(since) if activity else None,
            "source": "test",
        },
    )


def drive(rules, values, start=0.0, dt=2.0):
    outs = []
    for i, v in enumerate(values):
        outs.append(present(rules.on_reading(reading(T0 + start + i * dt, v))))
    return outs


def test_occupancy_switches_to_the_occupied_levels_and_back():
    rules, ctx = make_rules()
    occupy(ctx, True, T0 - 1, activity=350)
    outs = drive(rules, [0.1] * 4 + [32.0] * 6)
    assert all("mon.rate_warning" not in o for o in outs)  # 32 uSv/h is expected next to a patient
    assert rules.state(None)["thresholds"]["set"] == "occupied"
    occupy(ctx, False, T0 + 25)  # the patient left but the rate stayed: normal levels apply again
    outs = drive(rules, [32.0] * 4, start=26)
    assert {"mon.rate_warning", "mon.rate_alarm"} <= outs[-1]
    assert rules.state(None)["thresholds"]["set"] == "normal"


def test_spill_in_a_vacant_room_but_not_when_a_patient_arrives():
    rules, ctx = make_rules()
    outs = drive(rules, [0.1] * 5 + [5.0] * 4)
    assert "mon.spill" in outs[-1] and "mon.rate_alarm" not in outs[-1]
    rules, ctx = make_rules()
    occupy(ctx, True, T0 + 8, activity=350)
    outs = drive(rules, [0.1] * 5 + [30.0] * 4)
    assert all("mon.spill" not in o for o in outs)


def test_a_rise_beyond_what_the_patient_can_cause_is_still_a_spill():
    rules, ctx = make_rules()
    occupy(ctx, True, T0 - 3600, activity=350)  # injected an hour ago, settled at ~22 uSv/h at 1 m
    outs = drive(rules, [22.0] * 5 + [400.0] * 4)  # 0.5 m bound an hour later: ~88 uSv/h
    assert "mon.spill" in outs[-1]


def test_a_spill_right_after_a_patient_arrives_is_still_a_spill():
    # Before: any step within occupancy_grace_s of an arrival was "explained", however large.
    rules, ctx = make_rules()
    occupy(ctx, True, T0 + 8, activity=350)  # just injected: at most ~129 uSv/h at 0.5 m
    outs = drive(rules, [0.1] * 5 + [400.0] * 4)
    assert "mon.spill" in outs[-1]
    assert rules.rise.spill.level == 400.0


def test_a_patient_of_unknown_activity_explains_only_an_assumed_activity():
    # Before: "unknown activity" explained every rise in an occupied room.
    rules, ctx = make_rules()
    occupy(ctx, True, T0 - 3600)  # no activity given: 500 MBq assumed, an hour ago, 0.5 m -> ~126 uSv/h
    outs = drive(rules, [22.0] * 5 + [800.0] * 4)
    assert "mon.spill" in outs[-1]
    rules, ctx = make_rules()
    occupy(ctx, True, T0 - 3600)
    outs = drive(rules, [22.0] * 5 + [90.0] * 4)  # the patient walking up to the detector
    assert all("mon.spill" not in o for o in outs) and "unknown activity" in rules.rise.last_explained


@pytest.mark.parametrize(
    "flag,priority", [("instrument_high_alarm", "high"), ("instrument_low_alarm", "medium")]
)
def test_the_instruments_own_alarm_flags_raise_alarms(flag, priority):
    rules, _ctx = make_rules()
    out = rules.on_reading(reading(T0, 0.1, **{flag: True}))
    cond = next(c for c in out if c.alarm_id == f"mon.{flag}")
    assert cond.present and cond.priority == priority and cond.kind == "clinical"
    assert cond.type == f"radiation.{flag}"
    # Held even when the dose-rate value is unusable: the flag is the instrument's own judgement.
    out = rules.on_reading(reading(T0 + 2, None, detector_fault=True, **{flag: True}))
    assert f"mon.{flag}" in present(out)
    out = rules.on_reading(reading(T0 + 4, 0.1))
    assert f"mon.{flag}" not in present(out)


def test_zero_and_fault_readings_never_clear_an_alarm():
    rules, _ctx = make_rules()
    outs = drive(rules, [30.0] * 4)
    assert "mon.rate_alarm" in outs[-1]
    out = rules.on_reading(reading(T0 + 10, 0.0))
    assert not any(c.alarm_id == "mon.rate_alarm" for c in out)  # held: no absent condition is emitted
    assert rules.level(reading(T0 + 10, 0.0)) == "suspect"
    out = rules.on_reading(reading(T0 + 12, 0.0, detector_fault=True, fault_reason="HV"))
    assert "mon.detector_fault" in present(out) and not any(c.alarm_id == "mon.rate_alarm" for c in out)
    out = rules.on_reading(reading(T0 + 22, 0.0))
    assert "mon.zero_reading" in present(out)


def test_over_range_is_high_technical_and_counts_as_above_every_level():
    rules, _ctx = make_rules(range_max_usv_h=1000.0)
    outs = [rules.on_reading(reading(T0 + i, 1000.0)) for i in range(6)]
    over = next(c for c in outs[0] if c.alarm_id == "mon.over_range")
    assert over.present and over.priority == "high" and over.kind == "technical"
    assert "mon.rate_alarm" in present(outs[-1])


def test_config_refuses_a_monitor_without_thresholds_and_unknown_areas():
    with pytest.raises(ConfigError) as e:
        parse_config(
            {
                "site": {"id": "t", "name": "t"},
                "areas": {"hotlab": {"name": "H", "kind": "hot_lab"}},
                "radiation": {"areas": {"hotlba": {"normal": {"warning_usv_h": 1, "alarm_usv_h": 2}}}},
                "devices": {
                    "m": {
                        "kind": "ludlum375",
                        "location": "hotlab",
                        "serial_port": "/dev/null",
                        "reading_unit": "uSv/h",
                    },
                    "n": {"kind": "area_monitor_modbus", "transport": "tcp"},
                },
            }
        )
    paths = {i.path for i in e.value.issues}
    assert paths == {"devices.m.radiation", "devices.n.location", "radiation.areas.hotlba"}


def test_a_ludlum_without_a_reading_unit_is_refused_by_key_path():
    # Before: the unit defaulted to uSv/h, so a meter set to mR/h read 10x low without a word.
    with pytest.raises(ConfigError) as e:
        parse_config(
            {
                "site": {"id": "t", "name": "t"},
                "areas": {"hotlab": {"name": "H", "kind": "hot_lab"}},
                "radiation": {"areas": {"hotlab": {"normal": {"warning_usv_h": 7.5, "alarm_usv_h": 20}}}},
                "devices": {"m": {"kind": "ludlum375", "location": "hotlab", "serial_port": "/dev/null"}},
            }
        )
    issues = {i.path: i.message for i in e.value.issues}
    assert set(issues) == {"devices.m.reading_unit"} and "10x low" in issues["devices.m.reading_unit"]


def test_check_config_exits_2_naming_the_ludlum_reading_unit(tmp_path):
    text = (REPO / "examples" / "suite.toml").read_text()
    text, n = re.subn(r"(?m)^reading_unit = .*\n", "", text)
    assert n == 1
    bad = tmp_path / "no-unit.toml"
    bad.write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 2 and "devices.uptake6_ludlum.reading_unit: required" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "bad,why",
    [
        ({"warning_usv_h": 20, "alarm_usv_h": 7.5}, "below alarm"),
        ({"warning_usv_h": 7.5, "alarm_usv_h": 20, "hysteresis_usv_h": 8}, "smaller than warning"),
    ],
)
def test_threshold_sets_are_checked(bad, why):
    with pytest.raises(ConfigError, match=why):
        parse_config(
            {
                "site": {"id": "t", "name": "t"},
                "areas": {"hotlab": {"name": "H", "kind": "hot_lab"}},
                "radiation": {"areas": {"hotlab": {"normal": bad}}},
            }
        )


# -- the physical model -------------------------------------------------------------------------
def test_patient_dose_rates_match_tg108_figures():
    assert patient_dose_rate(350, 0, 1.0) == pytest.approx(32.2, abs=0.1)
    assert patient_dose_rate(350, 3600, 1.0) == pytest.approx(22.0, abs=0.3)
    assert patient_dose_rate(350, 0, 2.0) == pytest.approx(8.0, abs=0.1)


def test_model_adds_background_patients_and_spills_with_counting_noise():
    clock = [T0]
    m = AreaModel({"seed": 1}, clock=lambda: clock[0])
    bg = [m.sample().rate_usv_h for _ in range(2000)]
    mean = sum(bg) / len(bg)
    assert mean == pytest.approx(0.1, rel=0.05)
    assert len(set(bg)) > 5  # Poisson noise, not a constant
    m.arrive(activity_mbq=350, distance_m=1.0)
    m.spill(usv_h=10)
    assert m.true_rate(T0) == pytest.approx(0.1 + 32.2 + 10, abs=0.1)
    m.fail("zero")
    assert m.sample().rate_usv_h == 0.0
    m.repair()
    m.fix(usv_h=20000)
    s = m.sample()
    assert s.over_range and s.rate_usv_h == m.range_max


def test_poisson_mean_and_variance():
    import random

    rng = random.Random(7)
    for lam in (4.0, 200.0):
        xs = [poisson(rng, lam) for _ in range(4000)]
        mean = sum(xs) / len(xs)
        var = sum((x - mean) ** 2 for x in xs) / len(xs)
        assert mean == pytest.approx(lam, rel=0.05) and var == pytest.approx(lam, rel=0.15)
