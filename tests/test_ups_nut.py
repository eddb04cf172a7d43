"""The NUT driver against a real upsd (Debian's nut-server) on loopback, with the dummy-ups
driver fed by the project's battery model (simulators/ups_nut.py).

Covers: the status sequence mains -> battery -> low battery -> return, a calibration with
mains good, a UPS that stops answering (stale), upsd going silent (timeout), an unknown UPS
name, credentials and instant commands refused by upsd, and TLS required but not offered.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import free_port, wait_until_async

from suitemon.daemon import kinds
from suitemon.daemon.config import parse_config
from suitemon.drivers.base import CommError, DeviceException, DeviceTimeout
from suitemon.drivers.nut_protocol import NutError, NutStale
from suitemon.simulators.host import SimHost


def build(tmp_path, **dev):
    d = {"kind": "ups_nut", "port": free_port(), "ups": "petct", "timeout_s": 1.0, "poll_s": 0.5, **dev}
    return parse_config(
        {
            "site": {"id": "nutdrv", "name": "t"},
            "simulation": {"control_port": free_port()},
            "devices": {"ups": d},
        }
    )


def password_file(tmp_path, secret="s3cret pass"):
    p = tmp_path / "nut.pw"
    p.write_text(secret + "\n")
    p.chmod(0o600)
    return str(p)


def run(cfg, body, driver_cfg=None):
    async def main():
        host = SimHost(cfg)
        await host.start(control=False)
        driver = kinds.driver_class("ups_nut")("ups", driver_cfg or cfg.devices["ups"])
        try:
            await driver.open()
            await body(driver, host.sims["ups"])
        finally:
            await driver.close()
            await driver.close()  # twice is harmless
            await host.stop()

    asyncio.run(main())


def polled(driver, **expect):
    async def check():
        try:
            v = (await driver.poll()).values
        except CommError:
            await driver.open()
            return None
        return v if all(v.get(k) == want for k, want in expect.items()) else None

    return check


def test_nut_mains_battery_low_battery_and_return_through_real_upsd(tmp_path):
    async def body(driver, sim):
        v = await wait_until_async(polled(driver, online=True), 5.0, interval=0.05, what="OL")
        assert not v["on_battery"] and v["charge_pct"] == 100.0 and v["input_v"] == 230.0
        sim.model.mains_fail()
        v = await wait_until_async(polled(driver, on_battery=True), 5.0, interval=0.05, what="OB")
        assert v["input_bad"] and not v["shutdown_imminent"] and v["runtime_s"] > 0
        sim.model.set_model(charge_pct=5)  # runtime falls below the model's low_runtime_s: LB
        v = await wait_until_async(polled(driver, shutdown_imminent=True), 5.0, interval=0.05, what="OB LB")
        assert v["on_battery"] and v["nut_status"] == "OB LB"
        sim.model.mains_restore()
        v = await wait_until_async(polled(driver, on_battery=False), 5.0, interval=0.05, what="OL again")
        assert v["online"] and not v["input_bad"] and not v["shutdown_imminent"]

    run(build(tmp_path), body)


def test_nut_calibration_with_mains_good_is_not_a_mains_loss(tmp_path):
    async def body(driver, sim):
        await wait_until_async(polled(driver, online=True), 5.0, interval=0.05, what="OL")
        sim.model.calibrate(duration_s=30)
        v = await wait_until_async(polled(driver, calibrating=True), 5.0, interval=0.05, what="OB CAL")
        assert v["on_battery"] and not v["input_bad"] and v["input_v"] == 230.0
        sim.model.mains_fail()  # a real outage during the calibration still counts
        v = await wait_until_async(
            polled(driver, input_bad=True), 5.0, interval=0.05, what="mains lost during CAL"
        )
        assert v["on_battery"] and v["input_v"] == 0.0

    run(build(tmp_path), body)


def test_nut_calibration_without_input_voltage_counts_as_mains_lost(tmp_path):
    async def body(driver, sim):
        await wait_until_async(polled(driver, online=True), 5.0, interval=0.05, what="OL")
        sim.model.calibrate(duration_s=30)
        v = await wait_until_async(polled(driver, calibrating=True), 5.0, interval=0.05, what="OB CAL")
        assert v["input_v"] is None and v["input_bad"], "no input voltage: nothing proves mains is good"

    run(build(tmp_path, sim={"input_v_available": False}), body)


def test_nut_ups_that_stops_answering_is_a_failed_poll_then_recovers(tmp_path):
    async def body(driver, sim):
        await wait_until_async(polled(driver, online=True), 5.0, interval=0.05, what="OL")
        sim.stop_answering()  # the UPS driver freezes; upsd reports stale data after MAXAGE (3 s)

        async def stale():
            try:
                await driver.poll()
            except NutStale:
                return True
            return False

        await wait_until_async(stale, 10, interval=0.05, what="ERR DATA-STALE")
        sim.answer()
        await wait_until_async(polled(driver, online=True), 10, interval=0.05, what="fresh data again")

    run(build(tmp_path), body)


def test_nut_silent_upsd_times_out_and_the_link_reopens(tmp_path):
    async def body(driver, sim):
        await wait_until_async(polled(driver, online=True), 5.0, interval=0.05, what="OL")
        sim.unplug()
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout) as e:
            await driver.poll()
        assert isinstance(e.value, TimeoutError) and time.monotonic() - t0 < 2.0
        assert not driver.is_open  # a half-read answer stream is never reused
        sim.plug()
        await driver.open()
        assert (await driver.poll()).values["online"]

    run(build(tmp_path, timeout_s=0.5), body)


def test_nut_unknown_ups_name_is_a_refusal_naming_upsd_code(tmp_path):
    cfg = build(tmp_path)
    wrong = cfg.devices["ups"].model_copy(update={"ups": "nosuchups"})

    async def body(driver, sim):
        with pytest.raises(NutError) as e:
            await driver.poll()
        assert isinstance(e.value, DeviceException) and e.value.nut_code == "UNKNOWN-UPS"

    run(cfg, body, driver_cfg=wrong)


def test_nut_instcmd_is_sent_with_credentials_and_a_refusal_is_loud(tmp_path):
    pw = password_file(tmp_path)
    cfg = build(tmp_path, username="suitemon", password_file=pw)
    bad_pw = tmp_path / "wrong.pw"
    bad_pw.write_text("wrong\n")
    bad_pw.chmod(0o600)
    wrong = cfg.devices["ups"].model_copy(update={"password_file": bad_pw})

    async def body(driver, sim):
        # dummy-ups implements no instant commands: upsd refuses, and the sequencer must hear it.
        with pytest.raises(NutError) as e:
            await driver.command("shutdown_return", delay_s=20)
        assert e.value.nut_code == "CMD-NOT-SUPPORTED"
        other = kinds.driver_class("ups_nut")("ups", wrong)
        try:
            with pytest.raises(NutError) as e:
                await other.command("shutdown_return", delay_s=20)
            assert e.value.nut_code in ("ACCESS-DENIED", "PASSWORD-REQUIRED")
        finally:
            await other.close()

    run(cfg, body)


def test_nut_instcmd_without_credentials_is_refused_before_the_wire(tmp_path):
    async def body(driver, sim):
        with pytest.raises(Exception, match="username and password_file"):
            await driver.command("shutdown_return", delay_s=20)

    run(build(tmp_path), body)


def test_nut_tls_required_but_not_offered_refuses_to_connect(tmp_path):
    cfg = build(tmp_path)
    strict = cfg.devices["ups"].model_copy(update={"tls": "required"})

    async def main():
        host = SimHost(cfg)
        await host.start(control=False)
        driver = kinds.driver_class("ups_nut")("ups", strict)
        try:
            with pytest.raises(NutError) as e:
                await driver.open()
            assert "STARTTLS" in str(e.value) and not driver.is_open
        finally:
            await driver.close()
            await host.stop()

    asyncio.run(main())


def test_nut_starttls_verifies_upsd_certificate_and_refuses_a_wrong_one(tmp_path):
    """upsd with an NSS certificate database offers STARTTLS: the link is TLS, the certificate checked."""
    import ssl
    import subprocess

    cfg = build(tmp_path, sim={"tls": True})
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(tmp_path / "k"),
            "-out",
            str(other_ca),
            "-days",
            "1",
            "-subj",
            "/CN=someone else",
        ],
        check=True,
        capture_output=True,
    )

    async def main():
        host = SimHost(cfg)
        await host.start(control=False)
        sim = host.sims["ups"]
        good = cfg.devices["ups"].model_copy(update={"tls": "required", "ca_file": sim.ca_file})
        bad = cfg.devices["ups"].model_copy(update={"tls": "required", "ca_file": other_ca})
        driver = kinds.driver_class("ups_nut")("ups", good)
        try:
            await driver.open()
            r = await driver.poll()
            assert r.meta["tls"] is True and r.values["online"]
            impostor = kinds.driver_class("ups_nut")("ups", bad)
            with pytest.raises(CommError, match="TLS handshake failed") as e:
                await impostor.open()
            assert not isinstance(e.value, ssl.SSLError) and not impostor.is_open
        finally:
            await driver.close()
            await host.stop()

    asyncio.run(main())
