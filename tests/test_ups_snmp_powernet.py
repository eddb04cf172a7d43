"""The SNMP driver's APC PowerNet route (``vendor = "apc"``) against a real agent: net-snmp snmpd
serving PowerNet's upsBasicOutputStatus and upsBasicControlConserveBattery from the battery model.
The last shutdown step SETs conserve-battery, reads the output status until the UPS sleeps, and
is loud when the agent refuses the SET or the UPS never goes to sleep."""

from __future__ import annotations

import time

import pytest
from helpers import wait_until_async
from shutdown_helpers import AREAS, short_shutdown, shutdown_events
from test_scenario_ups_kinds import snmp_device
from test_ups_snmp import build, polled, run, v3

from suitemon.drivers.base import DeviceException
from suitemon.drivers.ups_snmp import (
    APC_CONSERVE_BATTERY,
    APC_OUTPUT_STATUS,
    APC_SLEEP_CONFIRM_S,
    CommandNotConfirmed,
)

SLEEPING_UNTIL_POWER_RETURN = 11  # PowerNet-MIB upsBasicOutputStatus
ON_LINE, ON_BATTERY = 2, 3


def apc(**dev):
    return build(vendor="apc", **dev)


async def output_status(driver):
    return (await driver._get([APC_OUTPUT_STATUS]))[APC_OUTPUT_STATUS]


def conserve_commands(sim):
    return [c["value"] for c in sim.model.state()["outlet_commands"] if c["snmp"].startswith("upsBasic")]


def shutdown_with_return_sleeps_and_returns(delay_s):
    async def body(driver, sim):
        assert await output_status(driver) == ON_LINE
        sim.model.mains_fail()
        await wait_until_async(polled(driver, on_battery=True), 5.0, interval=0.05, what="on battery")
        assert await output_status(driver) == ON_BATTERY
        t0 = time.monotonic()
        result = await driver.command("shutdown_return", delay_s=60)
        assert result["command"] == "upsBasicControlConserveBattery"
        assert result["output_status"] == SLEEPING_UNTIL_POWER_RETURN
        # Confirmed by the status the UPS reaches after its own delay, not by the SET's answer.
        assert time.monotonic() - t0 >= delay_s
        assert conserve_commands(sim) == [2]
        st = sim.model.state()
        assert not st["output_on"] and st["return_on_mains"]
        v = await wait_until_async(polled(driver, output_off=True), 5.0, interval=0.05, what="output off")
        assert not v["on_battery"]
        sim.model.mains_restore()
        await wait_until_async(polled(driver, online=True), 10.0, interval=0.05, what="back on mains")
        assert await output_status(driver) == ON_LINE

    return body


def test_powernet_shutdown_with_return_v2c_is_set_and_confirmed_by_sleeping():
    cfg = apc(version="2c", community="suite-rw", sim={"apc_shutoff_delay_s": 1.0, "return_delay_s": 0.2})
    run(cfg, shutdown_with_return_sleeps_and_returns(1.0))


def test_powernet_shutdown_with_return_v3_authpriv_is_set_and_confirmed_by_sleeping(tmp_path):
    cfg = apc(**v3(tmp_path), sim={"apc_shutoff_delay_s": 1.0, "return_delay_s": 0.2})
    run(cfg, shutdown_with_return_sleeps_and_returns(1.0))


def test_powernet_conserve_battery_refused_by_a_read_only_community_is_loud():
    async def body(driver, sim):
        sim.model.mains_fail()
        await wait_until_async(polled(driver, on_battery=True), 5.0, interval=0.05, what="on battery")
        with pytest.raises(DeviceException, match=r"refused SET .*noAccess") as err:
            await driver.command("shutdown_return", delay_s=60)
        assert APC_CONSERVE_BATTERY in str(err.value)
        assert conserve_commands(sim) == [] and sim.model.state()["output_on"]

    run(apc(version="2c", community="suite-ro", sim={"read_only": True}), body)


def test_powernet_conserve_battery_off_battery_is_refused_as_a_bad_value(tmp_path):
    """PowerNet-MIB: turning off a UPS that is not on battery is a badValue error."""

    async def body(driver, sim):
        with pytest.raises(DeviceException, match="wrongValue"):
            await driver.command("shutdown_return", delay_s=60)
        assert conserve_commands(sim) == [] and sim.model.state()["output_on"]

    run(apc(**v3(tmp_path)), body)


def test_powernet_set_accepted_but_never_sleeping_is_unconfirmed():
    async def body(driver, sim):
        sim.apc_never_sleeps(True)
        sim.model.mains_fail()
        await wait_until_async(polled(driver, on_battery=True), 5.0, interval=0.05, what="on battery")
        t0 = time.monotonic()
        with pytest.raises(CommandNotConfirmed, match="upsBasicOutputStatus reads 3"):
            await driver.command("shutdown_return", delay_s=60)
        assert time.monotonic() - t0 >= APC_SLEEP_CONFIRM_S
        assert conserve_commands(sim) == [2], "the agent took the SET"
        assert sim.model.state()["output_on"]

    run(apc(version="2c", community="suite-rw"), body)


@pytest.mark.slow
def test_powernet_never_sleeping_ups_raises_the_unconfirmed_alarm_in_the_daemon(make_suite, watcher):
    """Through the shutdown sequencer: the ups step ends as the other kinds' do when the UPS does not
    confirm (shutdown.step.timeout naming the status read, alarm shutdown.ups_unconfirmed)."""
    dev = {**snmp_device(vendor="apc"), "poll_s": 0.5, "on_battery_poll_s": 0.5}
    dev["sim"] = {**dev["sim"], "apc_shutoff_delay_s": 1.0}
    suite = make_suite(
        {"ups": dev},
        extra={
            "areas": AREAS,
            "shutdown": short_shutdown(
                triggers={"on_battery_s": 1.0, "runtime_below_s": False, "debounce_s": 0.5},
                targets={},
                steps=[
                    {
                        "id": "ups_outlets",
                        "kind": "ups",
                        "outlet_delay_s": 5,
                        "timeout_s": APC_SLEEP_CONFIRM_S + 2,
                    }
                ],
            ),
        },
    )
    suite.start_sims("ups")
    suite.start_daemon(watcher)
    watcher.wait_for(
        lambda w: (s := w.json_of(suite.topic("device", "ups", "state"))) and s["comm"] == "ok",
        15,
        what="UPS answering",
    )
    suite.sim("ups", "apc_never_sleeps", on=True)
    suite.sim("ups", "mains_fail")
    watcher.wait_for(
        lambda w: shutdown_events(w, suite.site, "shutdown.step.timeout"), 25, what="ups step timed out"
    )
    # The first attempt ends with the driver's reason; a retry cut by the step's deadline adds no new one.
    retrying = shutdown_events(watcher, suite.site, "shutdown.step.retrying")
    assert "CommandNotConfirmed: upsBasicOutputStatus reads 3" in retrying[0]["data"]["error"]
    watcher.wait_for(
        lambda w: (
            (a := w.json_of(suite.topic("alarm", "shutdown.ups_unconfirmed"))) and a["state"] == "active"
        ),
        10,
        what="ups_unconfirmed alarm",
    )
