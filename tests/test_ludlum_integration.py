"""Ludlum 375 over a real pty: the driver against the simulator, then simulator -> daemon -> Mosquitto."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import free_port

from suitemon.daemon import kinds
from suitemon.daemon.config import parse_config
from suitemon.drivers.base import CommError, DeviceTimeout, FrameError
from suitemon.simulators.host import SimHost

PERIOD = 0.2
RAD = {
    "normal": {"warning_usv_h": 7.5, "alarm_usv_h": 20.0, "hysteresis_usv_h": 2.0},
    "occupied": {"warning_usv_h": 60.0, "alarm_usv_h": 150.0, "hysteresis_usv_h": 5.0},
    "alarm_delay_s": 0.6,
    "zero_fault_s": 1.0,
}


def ludlum(tmp_path, **kw) -> dict:
    return {
        "kind": "ludlum375",
        "name": "Uptake 6 Ludlum",
        "location": "uptake6",
        "serial_port": str(tmp_path / "ludlum.tty"),
        "frame_period_s": PERIOD,
        "reading_unit": "uSv/h",
        "sim": {"seed": 3},
    } | kw


# -- the driver on its own, against the simulator on a pty ------------------------------
async def driver_scenario(tmp_path):
    cfg = parse_config(
        {
            "site": {"id": "l", "name": "l"},
            "simulation": {"control_port": free_port()},
            "areas": {"uptake6": {"name": "U6", "kind": "uptake_room"}},
            "radiation": {"areas": {"uptake6": RAD}},
            "devices": {"dut": ludlum(tmp_path)},
        }
    )
    host = SimHost(cfg)
    await host.start(control=False)
    sim = host.sims["dut"]
    driver = kinds.driver_class("ludlum375")("dut", cfg.devices["dut"])
    try:
        await driver.open()
        r1 = await asyncio.wait_for(driver.poll(), 2)
        r2 = await asyncio.wait_for(driver.poll(), 2)
        assert r2.mono > r1.mono and 0 <= r2.values["dose_rate_usv_h"] < 1
        assert r2.values["detector_fault"] is False and r2.values["display_unit"] == "uSv/h"

        # Poll late: the newest frame comes back at once, not a queue of old ones.
        await asyncio.sleep(3 * PERIOD)
        t = time.monotonic()
        r3 = await driver.poll()
        assert time.monotonic() - t < PERIOD / 2 and r3.values["frames"] >= r2.values["frames"] + 2

        # Garbage and a frame cut short: counted, and the next good frame is read.
        sim.garbage(count=40)
        sim.partial(count=7)
        sim.model.fix(usv_h=12.5)
        r = await asyncio.wait_for(_poll_until(driver, lambda r: r.values["dose_rate_usv_h"] == 12.5), 3)
        assert r.values["bad_frames"] >= 1

        # The instrument stops sending: no valid frame for 3 periods is a timeout (comm lost).
        sim.set_silence(True)
        await asyncio.sleep(0)
        t = time.monotonic()
        with pytest.raises(DeviceTimeout) as e:
            await _poll_until(driver, lambda r: False)
        took = time.monotonic() - t
        assert 2 * PERIOD <= took <= 3 * PERIOD + 0.5, took
        assert isinstance(e.value, TimeoutError)
        sim.set_silence(False)
        await asyncio.wait_for(driver.poll(), 2)

        # Only corrupted frames: that is no data either, reported as bad frames.
        sim.set_noise(1.0)
        with pytest.raises(FrameError, match="bad frame"):
            await asyncio.wait_for(_poll_until(driver, lambda r: False), 3)
        sim.set_noise(0.0)
        await asyncio.wait_for(driver.poll(), 2)

        # Cable pulled: an error at once, and it works again once plugged back in and reopened.
        await sim.unplug()
        with pytest.raises(CommError):
            await asyncio.wait_for(_poll_until(driver, lambda r: False), 2)
        await driver.close()
        await sim.plug()
        await driver.open()
        r = await asyncio.wait_for(driver.poll(), 2)
        assert r.values["dose_rate_usv_h"] == 12.5
    finally:
        await driver.close()
        await driver.close()  # twice is harmless
        await host.stop()


async def _poll_until(driver, pred):
    while True:
        r = await driver.poll()
        if pred(r):
            return r


def test_driver_reads_newest_frame_resynchronises_and_times_out(tmp_path):
    asyncio.run(driver_scenario(tmp_path))


# -- end to end ----------------------------------------------------------------------------
def start(make_suite, watcher, tmp_path, **kw):
    suite = make_suite(
        {"lud": ludlum(tmp_path, **kw)},
        {
            "areas": {"uptake6": {"name": "Uptake 6", "kind": "uptake_room"}},
            "radiation": {"areas": {"uptake6": RAD}},
        },
    )
    suite.start_sims()
    suite.start_daemon(watcher)
    return suite


def test_stopped_monitor_is_comm_lost_after_three_frame_periods(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, tmp_path)
    state_t = suite.topic("device", "lud", "state")
    s = watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and s["comm"] == "ok" and not s["stale"] and s,
        10,
        what="fresh Ludlum state",
    )
    assert s["unit"] == "uSv/h" and s["area"] == "uptake6" and s["level"] == "normal"

    silent_at = time.monotonic()
    suite.sim("lud", "silence", on=True)
    alarm_t = suite.topic("alarm", "lud.comm_lost")
    rec = watcher.wait_for(
        lambda w: (a := w.json_of(alarm_t)) and a["state"] == "active" and a, 5, what="comm-lost alarm"
    )
    took = time.monotonic() - silent_at
    # The last frame came at most one period before the silence: 2..3 periods, plus delivery.
    assert 2 * PERIOD - 0.05 <= took <= 3 * PERIOD + 0.6, f"comm loss took {took:.2f} s"
    assert rec["priority"] == "high" and "NOT being monitored" in rec["message"]
    s = watcher.wait_for(lambda w: (s := w.json_of(state_t))["stale"] and s, 5, what="stale state")
    assert s["comm"] == "lost" and s["level"] == "unknown"

    suite.sim("lud", "silence", on=False)
    watcher.wait_for(lambda w: w.json_of(alarm_t)["state"] == "closed", 5, what="comm back")
    watcher.wait_for(lambda w: not w.json_of(state_t)["stale"], 5, what="fresh again")


def test_garbage_on_the_serial_line_is_counted_and_never_alarms(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, tmp_path)
    state_t = suite.topic("device", "lud", "state")
    watcher.wait_for(lambda w: (s := w.json_of(state_t)) and s["comm"] == "ok", 10, what="Ludlum up")
    suite.sim("lud", "noise", rate=0.5)  # every other frame corrupted
    s = watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and s["values"]["bad_frames"] >= 6 and s,
        15,
        what="bad frames counted",
    )
    assert s["comm"] == "ok" and not s["stale"]
    suite.sim("lud", "noise", rate=0.0)
    for _ in range(3):  # bursts of garbage and cut-short frames, a good frame between bursts
        seen = watcher.json_of(state_t)["values"]["frames"]
        suite.sim("lud", "garbage", count=50)
        suite.sim("lud", "partial", count=9)
        watcher.wait_for(
            lambda w, seen=seen: w.json_of(state_t)["values"]["frames"] >= seen + 2,
            10,
            what="good frames again",
        )
    s = watcher.json_of(state_t)
    assert s["values"]["bad_frames"] >= 9 and s["comm"] == "ok" and not s["stale"]
    assert suite.sim("lud", "stats")["corrupted"] >= 6
    opened = [e["alarm_id"] for e in watcher.events(suite.site) if e["type"] == "alarm.raised"]
    assert opened == [], f"noise raised alarms: {opened}"

    # A real rise still gets through the noise, with the alarm delay.
    suite.sim("lud", "fix", usv_h=30.0)
    rec = watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", "lud.rate_alarm"))) and a["state"] == "active" and a,
        10,
        what="rate alarm through the noise",
    )
    assert rec["details"]["rate_at_raise_usv_h"] == 30.0


def test_ludlum_over_range_fault_and_occupancy(make_suite, watcher, tmp_path):
    suite = start(make_suite, watcher, tmp_path)
    state_t = suite.topic("device", "lud", "state")
    watcher.wait_for(lambda w: (s := w.json_of(state_t)) and s["comm"] == "ok", 10, what="Ludlum up")

    watcher.publish(
        suite.topic("cmd", "nurse2", "occupancy"), {"area": "uptake6", "occupied": True, "activity_mbq": 300}
    )
    watcher.wait_for(lambda w: w.json_of(state_t)["thresholds"]["set"] == "occupied", 5, what="occupied set")
    suite.sim("lud", "arrive", activity_mbq=300, distance_m=1.0)
    s = watcher.wait_for(lambda w: (s := w.json_of(state_t))["dose_rate_usv_h"] > 20 and s, 5, what="patient")
    assert s["level"] == "normal"

    suite.sim("lud", "fix", usv_h=20000.0)  # beyond the 6-character display: saturates, flags over-range
    rec = watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", "lud.over_range"))) and a["state"] == "active" and a,
        5,
        what="over-range",
    )
    assert (rec["priority"], rec["kind"]) == ("high", "technical")
    assert watcher.json_of(state_t)["values"]["display"] == "9999.0"

    suite.sim("lud", "fix")
    suite.sim("lud", "fail", mode="fault")  # monitor FAIL status and an error code
    rec = watcher.wait_for(
        lambda w: (
            (a := w.json_of(suite.topic("alarm", "lud.detector_fault"))) and a["state"] == "active" and a
        ),
        5,
        what="detector fault",
    )
    assert "monitor FAIL" in rec["message"] and (rec["priority"], rec["kind"]) == ("high", "technical")
    s = watcher.wait_for(lambda w: (s := w.json_of(state_t))["level"] == "fault" and s, 5, what="level fault")
    assert s["dose_rate_usv_h"] is None
    assert not [
        e
        for e in watcher.events(suite.site)
        if e["type"] == "alarm.raised" and e["alarm_id"] in ("lud.rate_warning", "lud.spill")
    ]


def test_the_instruments_own_alarm_bytes_raise_alarms_and_the_meters_unit_is_honoured(
    make_suite, watcher, tmp_path
):
    # A meter set to mR/h, configured as such: frames carry 0.6 (mR/h) for 6 uSv/h. The instrument's
    # own setpoints (5 and 2 uSv/h) sit below suitemon's 7.5 uSv/h warning: its flags alone must alarm.
    suite = start(
        make_suite,
        watcher,
        tmp_path,
        reading_unit="mR/h",
        sim={"seed": 3, "display_unit": "mR/h", "high_alarm_usv_h": 5.0, "low_alarm_usv_h": 2.0},
    )
    state_t = suite.topic("device", "lud", "state")
    watcher.wait_for(lambda w: (s := w.json_of(state_t)) and s["comm"] == "ok", 10, what="Ludlum up")
    suite.sim("lud", "fix", usv_h=6.0)
    s = watcher.wait_for(
        lambda w: (s := w.json_of(state_t)) and s["values"]["display"] == "0000.6" and s,
        5,
        what="the meter's own display",
    )
    assert s["dose_rate_usv_h"] == pytest.approx(6.0) and s["values"]["display_unit"] == "mR/h"
    for flag, priority in (("instrument_high_alarm", "high"), ("instrument_low_alarm", "medium")):
        rec = watcher.wait_for(
            lambda w, f=flag: (
                (a := w.json_of(suite.topic("alarm", f"lud.{f}"))) and a["state"] == "active" and a
            ),
            5,
            what=flag,
        )
        assert rec["priority"] == priority and rec["location"] == "uptake6"
    assert not [
        e
        for e in watcher.events(suite.site)
        if e["type"] == "alarm.raised" and e["alarm_id"] == "lud.rate_warning"
    ]
    suite.sim("lud", "fix", usv_h=0.1)
    watcher.wait_for(
        lambda w: (
            (a := w.json_of(suite.topic("alarm", "lud.instrument_high_alarm"))) and a["state"] == "closed"
        ),
        5,
        what="instrument alarm over",
    )
