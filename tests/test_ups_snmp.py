"""The SNMP driver (RFC 1628 UPS-MIB) against a real agent: Debian's net-snmp snmpd on loopback,
its UPS subtree served by a pass_persist helper from the project's battery model
(simulators/ups_snmp.py). v2c and v3 authPriv; a walk that times out; values that are missing;
shutdown-with-return confirmed by the countdown read back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from helpers import free_port, wait_until_async
from hypothesis import given
from hypothesis import strategies as st

from suitemon.daemon import kinds
from suitemon.daemon.config import ConfigError, parse_config
from suitemon.drivers.base import DeviceTimeout, DriverError, FrameError
from suitemon.drivers.ups_snmp import normalise
from suitemon.simulators.host import SimHost


def secret(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text + "\n")
    p.chmod(0o600)
    return str(p)


def v3(tmp_path, **kw):
    return {
        "version": "3",
        "user": "suitemon",
        "auth_password_file": secret(tmp_path, "auth.pw", "auth pass 123"),
        "priv_password_file": secret(tmp_path, "priv.pw", "priv-pass-456"),
        **kw,
    }


def build(**dev):
    # 1 s, not 0.5: snmpd's pass_persist helper is a Python process, and on the shared 2-core test
    # machine it sometimes answers after 0.5 s (seen with pysnmp and with the v2c codec alike).
    d = {"kind": "ups_snmp", "port": free_port(), "timeout_s": 1.0, "poll_s": 0.5, **dev}
    return parse_config(
        {
            "site": {"id": "snmpdrv", "name": "t"},
            "simulation": {"control_port": free_port()},
            "devices": {"ups": d},
        }
    )


def run(cfg, body, driver_cfg=None):
    async def main():
        host = SimHost(cfg)
        await host.start(control=False)
        driver = kinds.driver_class("ups_snmp")("ups", driver_cfg or cfg.devices["ups"])
        try:
            await driver.open()
            await body(driver, host.sims["ups"])
        finally:
            await driver.close()
            await driver.close()
            await host.stop()

    asyncio.run(main())


def polled(driver, **expect):
    async def check():
        try:
            v = (await driver.poll()).values
        except DeviceTimeout:
            # One slow answer on the loaded test machine is a failed poll, as the daemon counts it
            # (comm-lost after 3), not the failure of a wait that is about something else.
            return None
        return v if all(v.get(k) == want for k, want in expect.items()) else None

    return check


def test_snmp_v2c_mains_battery_low_battery_and_return():
    async def body(driver, sim):
        v = await wait_until_async(polled(driver, online=True), 5.0, interval=0.05, what="normal")
        assert v["charge_pct"] == 100.0 and v["input_v"] == 230.0 and v["outlet_countdown_s"] == -1
        sim.model.mains_fail()
        v = await wait_until_async(polled(driver, on_battery=True), 5.0, interval=0.05, what="battery")
        assert v["input_bad"] and not v["shutdown_imminent"] and "input_bad" in v["snmp_alarms"]
        sim.model.set_model(charge_pct=5)
        v = await wait_until_async(
            polled(driver, shutdown_imminent=True), 5.0, interval=0.05, what="battery low"
        )
        sim.model.mains_restore()
        v = await wait_until_async(polled(driver, on_battery=False), 5.0, interval=0.05, what="normal again")
        assert v["online"] and not v["input_bad"]

    run(build(version="2c", community="suite-ro"), body)


def test_snmp_v3_authpriv_polls_and_a_wrong_key_is_a_failed_poll(tmp_path):
    cfg = build(**v3(tmp_path))
    wrong = cfg.devices["ups"].model_copy(
        update={"priv_password_file": Path(secret(tmp_path, "bad.pw", "not-the-key"))}
    )

    async def body(driver, sim):
        assert (await driver.poll()).values["online"]
        other = kinds.driver_class("ups_snmp")("ups", wrong)
        await other.open()
        try:
            with pytest.raises(DriverError):
                await other.poll()
        finally:
            await other.close()

    run(cfg, body)


def test_snmp_walk_of_the_alarm_table_that_times_out_is_a_timeout_then_recovers():
    async def body(driver, sim):
        sim.model.mains_fail()
        await wait_until_async(polled(driver, on_battery=True), 5.0, interval=0.05, what="alarms present")
        sim.stall_walk(True)
        await asyncio.sleep(0.5)  # the helper sees the flag on its next read
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout):
            await driver.poll()
        assert time.monotonic() - t0 < 3.0
        sim.stall_walk(False)
        await wait_until_async(polled(driver, on_battery=True), 10, interval=0.05, what="walk answers again")

    run(build(version="2c", community="suite-ro"), body)


def test_snmp_missing_values_are_null_and_a_missing_output_source_is_no_reading():
    async def body(driver, sim):
        sim.drop_oids(["minutes_remaining", "input_v", "load_pct"])
        v = await wait_until_async(polled(driver, runtime_s=None), 5.0, interval=0.05, what="runtime gone")
        assert v["input_v"] is None and v["load_pct"] is None and v["charge_pct"] == 100.0
        sim.drop_oids(["output_source"])
        await asyncio.sleep(0.5)
        with pytest.raises(DriverError, match="output_source"):
            await driver.poll()

    run(build(version="2c", community="suite-ro"), body)


def test_snmp_an_oid_where_the_mib_has_a_number_is_a_frame_error_not_a_reading():
    """An agent answering output_source with an OBJECT IDENTIFIER gave a reading that was neither on
    battery nor online (an OID string compared with 5 and 3); it is a malformed answer."""

    async def refused(driver):
        try:
            await driver.poll()
        except FrameError as err:
            return err
        return None

    async def online(driver):
        try:
            return (await driver.poll()).values["online"]
        except FrameError:  # the helper still serves the old values
            return False

    async def body(driver, sim):
        await wait_until_async(polled(driver, online=True), 5.0, interval=0.05, what="normal")
        sim.mistype_oids(["output_source"])
        err = await wait_until_async(lambda: refused(driver), 5.0, interval=0.05, what="the OID refused")
        assert "output_source is an OBJECT IDENTIFIER" in str(err)
        sim.mistype_oids([])
        await wait_until_async(lambda: online(driver), 5.0, interval=0.05, what="numbers again")

    run(build(version="2c", community="suite-ro"), body)


def test_snmp_mapping_refuses_an_oid_in_a_numeric_object():
    base = {"battery_status": 2, "output_source": 5, "test_summary": 5, "minutes_remaining": 20}
    for key in ("output_source", "battery_status", "input_v", "minutes_remaining", "charge_pct"):
        with pytest.raises(FrameError, match=key):
            normalise({**base, key: "1.3.6.1.2.1.33.1.7.7.1"}, set())
    assert normalise({**base, "test_id": "1.3.6.1.2.1.33.1.7.7.1"}, set())["self_test"]


def test_snmp_silent_agent_times_out():
    async def body(driver, sim):
        await driver.poll()
        sim.unplug()
        try:
            with pytest.raises(DeviceTimeout):
                await driver.poll()
        finally:
            sim.plug()
        await wait_until_async(polled(driver, online=True), 5.0, interval=0.05, what="answers again")

    run(build(version="2c", community="suite-ro"), body)


def test_snmp_shutdown_with_return_is_confirmed_by_the_countdown(tmp_path):
    async def body(driver, sim):
        sim.model.mains_fail()
        result = await driver.command("shutdown_return", groups={"main_group": 30})
        assert result["command"] == "upsShutdownAfterDelay" and 0 < result["countdown_s"] <= 30
        st = sim.model.state()
        assert st["pending"] == "shutdown" and [c["value"] for c in st["outlet_commands"]] == [30]
        with pytest.raises(DriverError, match="commanded as a whole"):
            await driver.command("shutdown_return", groups={"switched_group_0": 30})

    run(build(**v3(tmp_path)), body)


def test_snmp_self_test_with_mains_good_is_not_a_mains_loss():
    async def body(driver, sim):
        sim.model.self_test(duration_s=20)
        v = await wait_until_async(
            polled(driver, self_test=True), 5.0, interval=0.05, what="test in progress"
        )
        assert v["on_battery"] and not v["input_bad"]

    run(build(version="2c", community="suite-ro"), body)


def test_snmp_mapping_of_the_ups_mib():
    base = {
        "battery_status": 2,
        "output_source": 3,
        "charge_pct": 97,
        "minutes_remaining": 20,
        "input_v": 231,
    }
    v = normalise(base, set())
    assert v["online"] and not v["on_battery"] and v["runtime_s"] == 1200.0
    v = normalise({**base, "output_source": 5, "battery_status": 3}, set())
    assert v["on_battery"] and v["input_bad"] and v["shutdown_imminent"]
    v = normalise({**base, "output_source": 5, "test_summary": 5, "input_v": None}, set())
    assert v["self_test"] and v["input_bad"], "a test without input voltage cannot prove mains is good"
    v = normalise({**base, "output_source": 5, "test_summary": 5, "test_id": "1.3.6.1.2.1.33.1.7.7.5"}, set())
    assert v["calibrating"] and not v["self_test"] and not v["input_bad"]
    v = normalise({**base, "output_source": 4}, {"battery_bad", "overload", "general_fault"})
    assert v["bypass"] and v["battery_needs_replacement"] and v["overload"] and v["fault"]
    with pytest.raises(DriverError):
        normalise({"battery_status": None, "output_source": 3}, set())


def test_snmp_config_refuses_v3_without_authpriv_and_v2c_without_community(tmp_path):
    with pytest.raises(ConfigError, match="authPriv"):
        build(version="3", user="suitemon")
    with pytest.raises(ConfigError, match="community"):
        build(version="2c")


_ints = st.none() | st.integers(min_value=-(2**31), max_value=2**32)


@given(
    raw=st.fixed_dictionaries(
        {
            k: _ints
            for k in (
                "battery_status",
                "output_source",
                "charge_pct",
                "minutes_remaining",
                "input_v",
                "output_v",
                "load_pct",
                "test_summary",
                "shutdown_after_delay",
            )
        }
    ),
    alarms=st.sets(
        st.sampled_from(
            [
                "battery_bad",
                "input_bad",
                "overload",
                "on_bypass",
                "low_battery",
                "test_in_progress",
                "general_fault",
                "alarm_99",
            ]
        )
    ),
)
def test_fuzz_snmp_values_map_or_are_refused(raw, alarms):
    """Whatever integers (or gaps) an agent returns, the mapping yields a reading or a DriverError."""
    try:
        v = normalise(raw, alarms)
    except DriverError:
        assert raw["battery_status"] is None or raw["output_source"] is None
        return
    assert isinstance(v["on_battery"], bool) and isinstance(v["shutdown_imminent"], bool)
    assert v["input_bad"] or not v["on_battery"] or v["self_test"] or v["calibrating"]


def test_snmp_unresolvable_agent_is_a_comm_error():
    from suitemon.drivers.base import CommError

    cfg = build(version="2c", community="x", host="no-such-ups-card.invalid")

    async def main():
        driver = kinds.driver_class("ups_snmp")("ups", cfg.devices["ups"])
        with pytest.raises(CommError, match="no-such-ups-card"):
            await driver.open()
        assert not driver.is_open
        await driver.close()

    asyncio.run(main())
