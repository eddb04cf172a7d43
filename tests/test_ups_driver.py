"""The APC driver against its simulator over a real pty (RTU) and a real TCP socket.

Covers what the shared contract does not: 35 ms between frames, the byte-order
self-test, faster polling on battery, outlet commands confirmed by the countdown,
the item rules of the wire, and the simulator's battery model.
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import REPO, free_port, wait_until_async

from suitemon.daemon import kinds
from suitemon.daemon.config import parse_config
from suitemon.drivers.base import DeviceException, DriverError
from suitemon.drivers.ups_apc import ByteOrderError
from suitemon.simulators.host import SimHost


def build(transport: str, tmp_path, **dev):
    d = {
        "kind": "ups_apc",
        "transport": transport,
        "timeout_s": 0.3,
        "poll_s": 0.5,
        "sim": {"return_delay_s": 0.3},
        **dev,
    }
    if transport == "tcp":
        d.update(host="127.0.0.1", port=free_port())
    else:
        d.update(serial_port=str(tmp_path / "ups.tty"))
    return parse_config(
        {
            "site": {"id": "upsdrv", "name": "t"},
            "simulation": {"control_port": free_port()},
            "devices": {"ups": d},
        }
    )


def run(cfg, body):
    async def main():
        host = SimHost(cfg)
        await host.start(control=False)
        dev = cfg.devices["ups"]
        driver = kinds.driver_class("ups_apc")("ups", dev)
        try:
            await body(driver, host.sims["ups"])
        finally:
            await driver.close()
            await host.stop()

    asyncio.run(main())


def test_rtu_keeps_35_ms_between_frames_at_9600_baud(tmp_path):
    cfg = build("rtu", tmp_path)
    assert cfg.devices["ups"].baudrate == 9600 and cfg.devices["ups"].frame_gap == 0.035

    async def body(driver, sim):
        await driver.open()
        for _ in range(3):
            r = await driver.poll()
            assert r.values["online"] is True and r.values["on_battery"] is False
        stats = sim.line_stats()
        # self-test block + 3 polls of 9 requests each
        assert stats["requests"] == 1 + 3 * 9
        assert stats["min_gap_ms"] >= 34.9, stats

    run(cfg, body)


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_values_decode_and_poll_faster_on_battery(transport, tmp_path):
    cfg = build(transport, tmp_path, poll_s=2.0, on_battery_poll_s=0.5)

    async def body(driver, sim):
        await driver.open()
        v = (await driver.poll()).values
        assert v["charge_pct"] == 100.0 and v["input_v"] == 230.0 and v["output_v"] == 230.0
        assert v["load_pct"] == 40.0 and v["battery_temp_c"] == 25.0 and v["outlet_countdown_s"] == -1
        assert v["runtime_s"] == 1500  # 600 s at 100 % load -> 1500 s at 40 %
        assert driver.poll_interval() == 2.0
        sim.mains_fail()
        v = (await driver.poll()).values
        assert v["on_battery"] and v["input_bad"] and v["power_failure"] and not v["online"]
        assert v["input_v"] == 0.0
        assert driver.poll_interval() == 0.5
        sim.mains_restore()
        v = (await driver.poll()).values
        assert v["online"] and not v["on_battery"]
        assert driver.poll_interval() == 2.0
        sim.set_model(input_v_available=False)
        assert (await driver.poll()).values["input_v"] is None

    run(cfg, body)


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_byte_order_mismatch_is_a_clear_error_not_data(transport, tmp_path):
    cfg = build(transport, tmp_path)

    async def body(driver, sim):
        sim.set_swap_bytes(True)
        with pytest.raises(ByteOrderError) as e:
            await driver.open()
        assert (
            "register 2058" in str(e.value) and "0x3412" in str(e.value) and "expected 4660" in str(e.value)
        )
        assert not driver.is_open
        sim.set_swap_bytes(False)
        await driver.open()
        assert (await driver.poll()).values["charge_pct"] == 100.0

    run(cfg, body)


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_a_gateway_swapping_the_words_of_32_bit_values_fails_the_self_test(transport, tmp_path):
    cfg = build(transport, tmp_path)

    async def body(driver, sim):
        sim.set_swap_words(True)  # every 16-bit register reads fine, 2058/2059 included
        with pytest.raises(ByteOrderError) as e:
            await driver.open()
        msg = str(e.value)
        assert "register 2054 (test_u32) reads 1450709556 (0x5678 0x1234), expected 305419896" in msg
        assert "register 2056 (test_s32) reads -262145 (0xFFFB 0xFFFF), expected -5" in msg
        assert "2058" not in msg and "words of 32-bit values" in msg
        assert not driver.is_open and driver.trust_problem == msg
        sim.set_swap_words(False)
        await driver.open()
        assert driver.trust_problem is None
        sim.mains_fail()
        v = (await driver.poll()).values
        assert v["on_battery"] is True and 1490 <= v["runtime_s"] <= 1500

    run(cfg, body)


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_shutdown_and_return_is_confirmed_by_the_countdown_and_power_cycles_the_load(transport, tmp_path):
    cfg = build(transport, tmp_path)

    async def body(driver, sim):
        await driver.open()
        sim.mains_fail()
        result = await driver.command("shutdown_return", delay_s=2)
        assert 0 <= result["countdown_s"] <= 2 and result["delay_s"] == 2
        st = sim.state()
        assert st["pending"] == "shutdown"
        assert st["outlet_commands"][-1]["raw"] == (1 << 3) | (1 << 7) | (1 << 8)
        v = (await driver.poll()).values
        assert v["output_off_pending"] and 0 <= v["outlet_countdown_s"] <= 2
        # The countdown ends: output off; mains returns: back on by itself.
        await wait_until_async(
            lambda: _poll_has(driver, output_off=True), 6, interval=0.05, what="output off"
        )
        sim.mains_restore()
        await wait_until_async(
            lambda: _poll_has(driver, online=True, output_off=False),
            5,
            interval=0.05,
            what="output back on mains",
        )
        # Cancel: the countdown stops.
        await driver.command("shutdown_return", delay_s=30)
        assert (await driver.command("cancel"))["countdown_s"] == -1
        assert sim.state()["pending"] is None

    run(cfg, body)


async def _poll_has(driver, **want):
    v = (await driver.poll()).values
    return all(v[k] == x for k, x in want.items())


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_wire_refuses_split_reads_and_partial_writes(transport, tmp_path):
    cfg = build(transport, tmp_path)

    async def body(driver, sim):
        await driver.open()
        dev = driver.dev
        with pytest.raises(DeviceException) as e:
            await dev.read_table("holding", 129, 2)  # second word of runtime + charge
        assert e.value.code == 2
        with pytest.raises(DeviceException):
            await dev.bus.request("write_register", 1538, 0x0188, unit=1)  # half of the outlet command
        with pytest.raises(DeviceException):
            await dev.read_table("holding", 2, 2)  # reserved registers
        assert sim.state()["pending"] is None

    run(cfg, body)


def test_battery_model_runtime_falls_with_load_and_charges_on_mains(tmp_path):
    cfg = build("tcp", tmp_path)

    async def body(driver, sim):
        await driver.open()
        sim.set_model(full_runtime_s=10.0, load_pct=100.0)
        sim.mains_fail()
        r0 = (await driver.poll()).values["runtime_s"]
        await asyncio.sleep(1.2)
        r1 = (await driver.poll()).values
        assert r1["runtime_s"] < r0 and r1["charge_pct"] < 100.0
        sim.set_model(load_pct=50.0)  # half the load: the same charge lasts twice as long
        r2 = (await driver.poll()).values
        assert r2["runtime_s"] >= 2 * r1["runtime_s"] - 2
        sim.set_model(charge_pct=5.0, low_runtime_s=3.0)
        v = (await driver.poll()).values
        assert v["shutdown_imminent"], v  # 0.5 s left: the UPS signals shutdown imminent
        await wait_until_async(
            lambda: _poll_has(driver, output_off=True), 3, interval=0.05, what="battery exhausted"
        )
        sim.set_model(load_pct=40.0)
        sim.mains_restore()
        await wait_until_async(
            lambda: _poll_has(driver, online=True), 3, interval=0.05, what="load back on mains"
        )
        c0 = (await driver.poll()).values["charge_pct"]
        sim.recharge_s = 2.0
        await asyncio.sleep(0.3)
        assert (await driver.poll()).values["charge_pct"] > c0

    run(cfg, body)


def test_flicker_and_self_test(tmp_path):
    cfg = build("tcp", tmp_path)

    async def body(driver, sim):
        await driver.open()
        sim.flicker(duration_s=0.4)
        v = (await driver.poll()).values
        assert v["on_battery"] and v["input_bad"]
        await wait_until_async(
            lambda: _poll_has(driver, online=True, on_battery=False),
            3,
            interval=0.05,
            what="mains back after flicker",
        )
        sim.self_test(duration_s=0.4)
        v = (await driver.poll()).values
        assert v["on_battery"] and v["self_test"] and not v["input_bad"]
        await wait_until_async(
            lambda: _poll_has(driver, self_test=False, on_battery=False),
            3,
            interval=0.05,
            what="self-test over",
        )

    run(cfg, body)


def test_another_ups_model_is_a_profile_with_its_own_register_layout(tmp_path):
    """Same names, other addresses: the driver and the simulator follow the profile file."""
    text = (REPO / "drivers" / "profiles" / "apc_smart_ups.toml").read_text()
    text = text.replace('name = "apc_smart_ups"', 'name = "other_ups"')
    text = text.replace("address = 128\n", "address = 300\n").replace("address = 130\n", "address = 302\n")
    other = tmp_path / "other_ups.toml"
    other.write_text(text)
    cfg = build("tcp", tmp_path, profile=str(other))

    async def body(driver, sim):
        await driver.open()
        assert driver.profile.name == "other_ups"
        assert [b[1] for b in driver.profile.blocks(driver.poll_names)] == [
            0,
            18,
            20,
            24,
            131,
            135,
            142,
            151,
            155,
            300,
        ]
        v = (await driver.poll()).values
        assert v["runtime_s"] == 1500 and v["charge_pct"] == 100.0

    run(cfg, body)


def test_outlet_groups_each_keep_their_delay_and_the_main_group_takes_the_switched_ones_with_it(tmp_path):
    cfg = build("tcp", tmp_path)

    async def body(driver, sim):
        await driver.open()
        assert driver.outlet_groups == (
            "main_group",
            "switched_group_0",
            "switched_group_1",
            "switched_group_2",
        )
        sim.mains_fail()
        with pytest.raises(DriverError, match="no outlet group 'switched_group_7'"):
            await driver.command("shutdown_return", groups={"switched_group_7": 5})
        r = await driver.command("shutdown_return", groups={"switched_group_0": 1, "main_group": 3})
        assert (
            r["groups"]["switched_group_0"]["delay_s"] == 1
            and 0 <= r["groups"]["main_group"]["countdown_s"] <= 3
        )
        assert sim.state()["outlet_commands"][-1]["raw"] == (1 << 3) | (1 << 7) | (1 << 8) | (1 << 9)
        await wait_until_async(
            lambda: _group_is(sim, "switched_group_0", False), 3, interval=0.05, what="switched group 0 off"
        )
        g = sim.state()["groups"]
        assert g["main_group"]["on"] and g["switched_group_1"]["on"]  # only the commanded group so far
        # The main group feeds the switched groups: when it goes off, so does group 1 (never commanded).
        await wait_until_async(
            lambda: _group_is(sim, "main_group", False), 4, interval=0.05, what="main group off"
        )
        assert sim.state()["groups"]["switched_group_1"]["on"] is False
        sim.mains_restore()  # shutdown-and-return: everything comes back with mains
        await wait_until_async(
            lambda: _group_is(sim, "switched_group_0", True), 3, interval=0.05, what="switched group 0 back"
        )
        assert all(x["on"] for x in sim.state()["groups"].values())

    run(cfg, body)


async def _group_is(sim, group, on):
    return sim.state()["groups"][group]["on"] is on
