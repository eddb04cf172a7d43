"""Trigger debounce and config safety rules (pure logic: a clock and UPS facts, no wire)."""

from __future__ import annotations

import pytest
from shutdown_helpers import short_shutdown

from suitemon.daemon.config import ConfigError, parse_config
from suitemon.daemon.shutdown.config import ShutdownConfig, Triggers
from suitemon.daemon.shutdown.triggers import TriggerWatch, estimated_runtime
from suitemon.daemon.ups.rules import power_fact

MAINS = {
    "online": True,
    "on_battery": False,
    "input_bad": False,
    "self_test": False,
    "shutdown_imminent": False,
    "runtime_s": 1500,
    "charge_pct": 100.0,
}
OUTAGE = {**MAINS, "online": False, "on_battery": True, "input_bad": True}
SELF_TEST = {**MAINS, "online": False, "on_battery": True, "self_test": True}


def fact(values, comm="ok", mono=0.0):
    return power_fact(values, comm=comm, at=0.0, mono=mono, device="ups", last_ok=mono)


def run(watch, timeline, until, step=0.25):
    """Feed facts at a 0.25 s tick; timeline: [(from_t, values, comm)]. Return (t, trigger) or None."""
    t = 0.0
    while t <= until:
        current = [x for x in timeline if x[0] <= t][-1]
        fired = watch.update(fact(current[1], current[2] if len(current) > 2 else "ok"), t)
        if fired:
            return t, fired
        t = round(t + step, 6)
    return None


def test_a_blip_shorter_than_the_debounce_never_fires():
    watch = TriggerWatch(Triggers(on_battery_s=15, debounce_s=5))
    low = {**OUTAGE, "runtime_s": 100, "shutdown_imminent": True}
    assert run(watch, [(0, MAINS), (1, low), (3.0, MAINS)], until=40) is None


def test_a_self_test_never_fires_however_long_it_lasts():
    watch = TriggerWatch(Triggers(on_battery_s=15, runtime_below_s=2000, debounce_s=5))
    assert run(watch, [(0, SELF_TEST)], until=60) is None
    # ... not even if the weak battery makes the UPS signal shutdown imminent during it
    assert run(watch, [(0, {**SELF_TEST, "shutdown_imminent": True})], until=60) is None


def test_mains_failing_during_a_self_test_counts():
    watch = TriggerWatch(Triggers(on_battery_s=3, runtime_below_s=False, debounce_s=5))
    t, fired = run(watch, [(0, {**SELF_TEST, "input_bad": True})], until=10)
    assert fired["name"] == "on_battery" and t == pytest.approx(3.0)


def test_on_battery_fires_after_its_time_and_says_so():
    watch = TriggerWatch(Triggers(on_battery_s=15, runtime_below_s=False, debounce_s=5))
    t, fired = run(watch, [(0, MAINS), (2, OUTAGE)], until=30)
    assert t == pytest.approx(17.0)
    assert fired["name"] == "on_battery" and fired["power"] is True and fired["held_s"] == pytest.approx(15.0)


def test_runtime_and_charge_and_shutdown_imminent_are_debounced():
    for values, name in [
        ({**OUTAGE, "runtime_s": 200}, "runtime_low"),
        ({**OUTAGE, "charge_pct": 20.0}, "charge_low"),
        ({**OUTAGE, "shutdown_imminent": True}, "shutdown_imminent"),
    ]:
        watch = TriggerWatch(
            Triggers(on_battery_s=False, runtime_below_s=300, charge_below_pct=25, debounce_s=5)
        )
        t, fired = run(watch, [(0, MAINS), (1, values)], until=20)
        assert fired["name"] == name and t == pytest.approx(6.0), (name, t)


def test_runtime_low_on_mains_does_not_fire():
    watch = TriggerWatch(Triggers(runtime_below_s=300, debounce_s=1))
    assert run(watch, [(0, {**MAINS, "runtime_s": 60})], until=20) is None


def test_comm_lost_on_battery_fires_but_comm_lost_on_mains_does_not():
    watch = TriggerWatch(Triggers(on_battery_s=100, debounce_s=2))
    t, fired = run(watch, [(0, OUTAGE), (1, OUTAGE, "lost")], until=10)
    assert fired["name"] == "comm_lost_on_battery" and t == pytest.approx(3.0)
    watch = TriggerWatch(Triggers(on_battery_s=100, debounce_s=2))
    assert run(watch, [(0, MAINS), (1, MAINS, "lost")], until=20) is None


def test_runtime_estimate_keeps_falling_while_the_ups_is_silent():
    p = power_fact(OUTAGE, comm="lost", at=0, mono=10.0, device="ups", last_ok=10.0)
    assert estimated_runtime(p, 40.0) == 1500 - 30
    assert estimated_runtime({**p, "comm": "ok"}, 40.0) == 1500


def test_triggers_turned_off_with_false_and_true_is_refused():
    t = Triggers(on_battery_s=False, runtime_below_s=False)
    assert [c[0] for c in TriggerWatch(t).conditions(fact(OUTAGE))] == [
        "shutdown_imminent",
        "comm_lost_on_battery",
    ]
    with pytest.raises(ValueError, match="false to turn this trigger off"):
        Triggers(on_battery_s=True)


def base_cfg(shutdown):
    return {
        "site": {"id": "s", "name": "s"},
        "devices": {"ups": {"kind": "ups_apc", "transport": "tcp", "port": 5502}},
        "shutdown": shutdown,
    }


def issues(shutdown):
    with pytest.raises(ConfigError) as e:
        parse_config(base_cfg(shutdown))
    return [str(i) for i in e.value.issues]


def test_config_refuses_unsafe_sequences_with_key_paths():
    ok = parse_config(base_cfg(short_shutdown()))
    assert isinstance(ok.shutdown, ShutdownConfig) and ok.shutdown.pnr_index == 2
    s = short_shutdown()
    s["steps"] = s["steps"][::-1]
    assert any("last step, and only the last, must be the ups step" in i for i in issues(s))
    s = short_shutdown()
    s["steps"][1]["target"] = "nobody"
    assert any("undeclared targets: nobody" in i for i in issues(s))
    s = short_shutdown(point_of_no_return="stop_acquisitions")
    assert any("never sent" in i and "stop_acquisitions, workstations_off" in i for i in issues(s))
    s = short_shutdown(ups="nope")
    assert issues(s) == ["shutdown.ups: unknown device 'nope'"]
    s = short_shutdown()
    s["steps"][2].pop("outlet_delay_s")
    assert any(i.startswith("shutdown:") and "ups step needs outlet_delay_s" in i for i in issues(s))


# A runtime calibration (AN-176 register 24 bit 1): on battery with mains present, the battery
# drained on purpose, the UPS signalling low battery near the end (NUT: OB+LB while CAL).
CALIBRATION = {
    **MAINS,
    "online": False,
    "on_battery": True,
    "calibrating": True,
    "input_v": 231.0,
    "runtime_s": 90,
    "charge_pct": 20.0,
    "shutdown_imminent": True,
}


def cal_fact(values, comm="ok"):
    return power_fact(values, comm=comm, at=0.0, mono=0.0, device="ups", last_ok=0.0, mains_min_v=180.0)


def run_cal(watch, values, until, comm="ok"):
    t = 0.0
    while t <= until:
        if fired := watch.update(cal_fact(values, comm), t):
            return t, fired
        t = round(t + 0.25, 6)
    return None


def test_a_calibration_with_mains_good_arms_no_trigger():
    watch = TriggerWatch(Triggers(on_battery_s=15, runtime_below_s=300, charge_below_pct=30, debounce_s=5))
    assert run_cal(watch, CALIBRATION, until=120) is None
    f = cal_fact(CALIBRATION)
    assert f["on_battery"] is False and f["shutdown_imminent"] is False and f["mains_ok"] is True
    assert f["battery_test"] == "calibration"


@pytest.mark.parametrize(
    "outage",
    [{"input_bad": True}, {"power_failure": True}, {"input_v": 0.0}, {"input_v": 150.0}],
    ids=["input-bad bit", "power-failure bit", "no input voltage", "input voltage low"],
)
def test_a_real_mains_loss_during_a_calibration_still_counts(outage):
    watch = TriggerWatch(Triggers(on_battery_s=15, runtime_below_s=300, charge_below_pct=False, debounce_s=5))
    t, fired = run_cal(watch, {**CALIBRATION, **outage}, until=30)
    assert fired["name"] == "shutdown_imminent" and t == pytest.approx(5.0)
    assert cal_fact({**CALIBRATION, **outage})["on_battery"] is True


def test_comm_lost_during_a_calibration_is_critical_as_in_nut():
    watch = TriggerWatch(Triggers(on_battery_s=100, runtime_below_s=False, debounce_s=2))
    t, fired = run_cal(watch, CALIBRATION, until=10, comm="lost")
    assert fired["name"] == "comm_lost_on_battery" and t == pytest.approx(2.0)


GROUPS = {
    "scanner_supply": {"ups_group": "switched_group_0", "off_delay_s": 60},
    "supervision": {"ups_group": "main_group", "off_delay_s": 600, "supervision": True},
}


def with_groups(groups, **ups):
    s = short_shutdown(outlet_groups=groups)
    s["steps"][2] = {"id": "ups_outlets", "kind": "ups", "timeout_s": 5.0, **ups}
    return s


def test_outlet_groups_keep_patient_supervision_powered_last():
    ok = parse_config(base_cfg(with_groups(GROUPS))).shutdown
    assert list(ok.ups_groups()) == ["scanner_supply", "supervision"]
    assert ok.ups_off_after_s() == 60  # the time budget waits for the scanner's group, not supervision's
    late = {**GROUPS, "scanner_supply": {**GROUPS["scanner_supply"], "off_delay_s": 900}}
    assert any(
        "main group, which feeds the switched groups" in i and "scanner_supply" in i
        for i in issues(with_groups(late))
    )
    sog_sup = {
        "scanner_supply": {"ups_group": "main_group", "off_delay_s": 60},
        "supervision": {"ups_group": "switched_group_1", "off_delay_s": 600, "supervision": True},
    }
    assert any("main group" in i for i in issues(with_groups(sog_sup)))
    both = {**GROUPS, "dispenser": {"ups_group": "switched_group_1", "off_delay_s": 600}}
    assert any("must switch off last: dispenser" in i for i in issues(with_groups(both)))
    none = {k: {**g, "supervision": False} for k, g in GROUPS.items()}
    assert any("no outlet group has supervision = true" in i for i in issues(with_groups(none)))
    assert any("drop outlet_delay_s" in i for i in issues(with_groups(GROUPS, outlet_delay_s=30)))
    assert any(
        "undeclared outlet groups: nope" in i for i in issues(with_groups(GROUPS, outlet_groups=["nope"]))
    )
    same = {**GROUPS, "other": {"ups_group": "switched_group_0", "off_delay_s": 30}}
    assert any("same UPS group (switched_group_0)" in i for i in issues(with_groups(same)))


def test_outlet_groups_must_exist_in_the_ups_profile(tmp_path):
    from helpers import REPO

    text = (REPO / "drivers" / "profiles" / "apc_smart_ups.toml").read_text()
    start = text.index("default_group =")
    one_group = tmp_path / "one_group_ups.toml"  # a model with its main group only
    one_group.write_text(text[:start] + text[text.index("[points.status]") :])
    cfg = base_cfg(with_groups(GROUPS))
    cfg["devices"]["ups"]["profile"] = str(one_group)
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    assert [str(i) for i in e.value.issues] == [
        "shutdown.outlet_groups.scanner_supply.ups_group: UPS 'ups' (profile "
        + str(one_group)
        + ") has no outlet group 'switched_group_0' (it has main_group)"
    ]
