"""The driver contract, run against every kind's simulator: the Modbus kinds over TCP and over RTU
(pty pair), the Ludlum 375 over its serial stream (pty).

One test per behaviour, so the first broken behaviour does not hide the rest. Every driver must:
poll a complete reading; time out (DeviceTimeout, also a TimeoutError) on a silent device; report
a corrupted answer (and, on Modbus, an exception response) as a DriverError; survive a pulled cable
and work again once it is back; close twice without harm.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from contract_cases import CASES, NETWORK_UPS_CASES, STREAM_CASES
from helpers import free_port

from suitemon.daemon import kinds
from suitemon.daemon.config import parse_config
from suitemon.drivers.base import CommError, DeviceException, DeviceTimeout, DriverError
from suitemon.simulators.host import SimHost

RIGS = [(c, t) for c in CASES for t in ("tcp", "rtu")] + [(c, "stream") for c in STREAM_CASES]
IDS = [f"{c['kind']}-{t}" for c, t in RIGS]
MODBUS_RIGS = [r for r in RIGS if r[1] != "stream"]
LIMIT = 5  # s: a behaviour that takes longer than this is a hang, not a slow device


def build(kind_case: dict, transport: str, tmp_path):
    dev = {"kind": kind_case["kind"], "timeout_s": 0.2, "poll_s": 0.5, **kind_case["config"]}
    if transport == "tcp":
        dev.update(transport="tcp", host="127.0.0.1", port=free_port())
    elif transport == "rtu":
        dev.update(transport="rtu", serial_port=str(tmp_path / "dev.tty"), baudrate=19200)
    else:
        dev.update(serial_port=str(tmp_path / "dev.tty"))
    return parse_config(
        {
            "site": {"id": "contract", "name": "c"},
            "simulation": {"control_port": free_port()},
            **kind_case.get("extra", {}),
            "devices": {"dut": dev},
        }
    )


@contextlib.asynccontextmanager
async def rig(case, transport, tmp_path):
    cfg = build(case, transport, tmp_path)
    host = SimHost(cfg)
    await host.start(control=False)
    dev = cfg.devices["dut"]
    driver = kinds.driver_class(dev.kind)("dut", dev)
    try:
        await driver.open()
        yield driver, host.sims["dut"]
    finally:
        await driver.close()
        await host.stop()


def silence(sim, on: bool) -> None:
    if hasattr(sim, "set_silence"):
        sim.set_silence(on)
    elif on:
        sim.set_fault(silent=True)
    else:
        sim.clear_faults()


def corrupt(sim, on: bool) -> None:
    if hasattr(sim, "set_noise"):
        sim.set_noise(1.0 if on else 0.0)
    elif on:
        sim.set_fault(corrupt_crc=True)
    else:
        sim.clear_faults()


async def poll_until_error(driver):
    """A streaming driver may still hold a good frame from before the fault: poll until it tells."""

    async def loop():
        while True:
            await driver.poll()

    await asyncio.wait_for(loop(), LIMIT)


async def good_poll(driver, case):
    r = await asyncio.wait_for(driver.poll(), LIMIT)
    assert case["expect_keys"] <= set(r.values), set(r.values)
    return r


def run(case, transport, tmp_path, behaviour):
    async def main():
        async with rig(case, transport, tmp_path) as (driver, sim):
            await behaviour(driver, sim, case)

    asyncio.run(main())


@pytest.mark.parametrize("case, transport", RIGS, ids=IDS)
def test_polls_a_complete_reading(case, transport, tmp_path):
    async def behaviour(driver, sim, case):
        r = await good_poll(driver, case)
        assert r.device_id == "dut"

    run(case, transport, tmp_path, behaviour)


@pytest.mark.parametrize("case, transport", RIGS, ids=IDS)
def test_a_silent_device_times_out_and_is_read_again_when_it_answers(case, transport, tmp_path):
    async def behaviour(driver, sim, case):
        await good_poll(driver, case)
        silence(sim, True)
        with pytest.raises(DeviceTimeout) as e:
            await poll_until_error(driver)
        assert isinstance(e.value, TimeoutError) and isinstance(e.value, CommError)
        silence(sim, False)
        await good_poll(driver, case)

    run(case, transport, tmp_path, behaviour)


@pytest.mark.parametrize("case, transport", RIGS, ids=IDS)
def test_a_corrupted_answer_is_a_driver_error_and_the_next_good_one_is_read(case, transport, tmp_path):
    async def behaviour(driver, sim, case):
        await good_poll(driver, case)
        corrupt(sim, True)
        with pytest.raises(DriverError):
            await poll_until_error(driver)
        corrupt(sim, False)
        await good_poll(driver, case)

    run(case, transport, tmp_path, behaviour)


@pytest.mark.parametrize("case, transport", MODBUS_RIGS, ids=[f"{c['kind']}-{t}" for c, t in MODBUS_RIGS])
def test_a_modbus_exception_response_is_a_device_exception_with_its_code(case, transport, tmp_path):
    async def behaviour(driver, sim, case):
        sim.set_fault(exception=4)
        with pytest.raises(DeviceException) as e:
            await asyncio.wait_for(driver.poll(), LIMIT)
        assert e.value.code == 4
        sim.clear_faults()
        await good_poll(driver, case)

    run(case, transport, tmp_path, behaviour)


@pytest.mark.parametrize("case, transport", RIGS, ids=IDS)
def test_a_pulled_cable_is_an_error_and_it_works_again_once_back(case, transport, tmp_path):
    async def behaviour(driver, sim, case):
        await good_poll(driver, case)
        await sim.unplug()
        with pytest.raises(DriverError):
            await poll_until_error(driver)
        await sim.plug()
        if case.get("reopen_after_plug"):
            await driver.close()
            await driver.open()
        await good_poll(driver, case)

    run(case, transport, tmp_path, behaviour)


@pytest.mark.parametrize("case, transport", RIGS, ids=IDS)
def test_closing_twice_is_harmless(case, transport, tmp_path):
    async def behaviour(driver, sim, case):
        await good_poll(driver, case)
        await driver.close()
        await driver.close()

    run(case, transport, tmp_path, behaviour)


async def network_scenario(cfg, kind_case):
    """The contract for a UPS reached through a server (upsd, an SNMP agent): complete readings with
    the shared names, a silent server is a DeviceTimeout, the link recovers, close twice."""
    host = SimHost(cfg)
    await host.start(control=False)
    dev = cfg.devices["dut"]
    driver = kinds.driver_class(dev.kind)("dut", dev)
    sim = host.sims["dut"]
    try:
        await driver.open()
        r = await driver.poll()
        assert kind_case["expect_keys"] <= set(r.values), kind_case["expect_keys"] - set(r.values)
        assert r.device_id == "dut"
        sim.unplug()
        try:
            with pytest.raises(DeviceTimeout) as e:
                await asyncio.wait_for(driver.poll(), 5)
            assert isinstance(e.value, TimeoutError) and isinstance(e.value, CommError)
        finally:
            sim.plug()
        if not driver.is_open:
            await driver.open()
        r = await asyncio.wait_for(driver.poll(), 5)
        assert kind_case["expect_keys"] <= set(r.values)
    finally:
        await driver.close()
        await driver.close()  # twice is harmless
        await host.stop()


@pytest.mark.parametrize("case", NETWORK_UPS_CASES, ids=[c["kind"] for c in NETWORK_UPS_CASES])
def test_network_ups_driver_contract(case):
    dev = {"kind": case["kind"], "port": free_port(), "poll_s": 0.5, "timeout_s": 0.5, **case["config"]}
    cfg = parse_config(
        {
            "site": {"id": "contract", "name": "c"},
            "simulation": {"control_port": free_port()},
            "devices": {"dut": dev},
        }
    )
    asyncio.run(network_scenario(cfg, case))
