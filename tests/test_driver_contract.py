"""The driver contract, run against every Modbus kind's simulator over TCP and over RTU (pty pair).

Every driver must: poll a complete reading; time out (DeviceTimeout, also a TimeoutError)
on a silent device; report a corrupted answer or an exception response as a DriverError;
survive a pulled cable and work again once it is back; close twice without harm.
"""

from __future__ import annotations

import asyncio

import pytest

from contract_cases import CASES
from suitemon.daemon import kinds
from suitemon.daemon.config import parse_config
from suitemon.drivers.base import CommError, DeviceException, DeviceTimeout, DriverError
from helpers import free_port
from suitemon.simulators.host import SimHost

MODBUS_CASES = [c for c in CASES if c.get("transport", "modbus") == "modbus"]


def build(kind_case: dict, transport: str, tmp_path):
    dev = {"kind": kind_case["kind"], "transport": transport, "timeout_s": 0.2, "poll_s": 0.5,
           **kind_case["config"]}
    if transport == "tcp":
        dev.update(host="127.0.0.1", port=free_port())
    else:
        dev.update(serial_port=str(tmp_path / "dev.tty"), baudrate=19200)
    cfg = parse_config({"site": {"id": "contract", "name": "c"}, "simulation": {"control_port": free_port()},
                        **kind_case.get("extra", {}), "devices": {"dut": dev}})
    return cfg


async def scenario(cfg, kind_case):
    host = SimHost(cfg)
    await host.start(control=False)
    dev = cfg.devices["dut"]
    driver = kinds.driver_class(dev.kind)("dut", dev)
    sim = host.sims["dut"]
    try:
        await driver.open()
        r = await driver.poll()
        assert kind_case["expect_keys"] <= set(r.values), set(r.values)
        assert r.device_id == "dut"

        sim.set_fault(silent=True)
        with pytest.raises(DeviceTimeout) as e:
            await asyncio.wait_for(driver.poll(), 5)
        assert isinstance(e.value, TimeoutError) and isinstance(e.value, CommError)
        sim.clear_faults()
        await driver.poll()

        sim.set_fault(corrupt_crc=True)
        with pytest.raises(DriverError):
            await asyncio.wait_for(driver.poll(), 5)
        sim.clear_faults()
        await driver.poll()

        sim.set_fault(exception=4)
        with pytest.raises(DeviceException) as e:
            await asyncio.wait_for(driver.poll(), 5)
        assert e.value.code == 4
        sim.clear_faults()
        await driver.poll()

        await sim.unplug()
        with pytest.raises(DriverError):
            await asyncio.wait_for(driver.poll(), 5)
        await sim.plug()
        r = await asyncio.wait_for(driver.poll(), 5)
        assert kind_case["expect_keys"] <= set(r.values)
    finally:
        await driver.close()
        await driver.close()  # twice is harmless
        await host.stop()


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
@pytest.mark.parametrize("case", MODBUS_CASES, ids=[c["kind"] for c in MODBUS_CASES])
def test_driver_contract(case, transport, tmp_path):
    asyncio.run(scenario(build(case, transport, tmp_path), case))


NETWORK_UPS_CASES = [c for c in CASES if c.get("transport") in ("nut", "snmp")]


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
    cfg = parse_config({"site": {"id": "contract", "name": "c"}, "simulation": {"control_port": free_port()},
                        "devices": {"dut": dev}})
    asyncio.run(network_scenario(cfg, case))
