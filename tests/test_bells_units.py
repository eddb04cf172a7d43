"""Call-bell pieces on their own: NEWS2 rule, module profiles, the simulator's latch, and the
driver against the simulator over a real TCP socket (edges, lamp writes and read-back)."""

from __future__ import annotations

import asyncio

import pytest
from helpers import free_port
from test_bells_config import GOOD

from suitemon.daemon.bells.service import ladder_start, news2_band
from suitemon.daemon.config import parse_config
from suitemon.drivers.base import ProfileError
from suitemon.drivers.io_module import load_io_profile
from suitemon.simulators.callbell_io import IoStore
from suitemon.simulators.host import SimHost
from suitemon.simulators.modbus_server import ModbusError


@pytest.mark.parametrize(
    "score, red, band, step",
    [
        (None, False, None, 0),
        (None, True, "low-medium", 0),
        (0, False, "low", 0),
        (4, False, "low", 0),
        (3, True, "low-medium", 0),
        (5, False, "medium", 0),
        (6, True, "medium", 0),
        (7, False, "high", 1),
        (20, False, "high", 1),
    ],
)
def test_news2_chooses_the_ladder_start(score, red, band, step):
    cfg = parse_config(dict(GOOD))
    assert news2_band(score, red) == band
    assert ladder_start(cfg.ladders["det"], band) == step


def test_shipped_profiles_and_bad_ones(tmp_path):
    p = load_io_profile("dio16_latch")
    assert (p.inputs, p.coils, p.latching) == (16, 16, True)
    assert not load_io_profile("dio16").latching
    assert load_io_profile("dio32_latch").inputs == 32
    with pytest.raises(ProfileError, match="no I/O module profile named"):
        load_io_profile("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ninputs = 0\n')
    with pytest.raises(ProfileError, match="inputs"):
        load_io_profile(str(bad))
    bad.write_text('name = "x"\ninputs = 8\nlatch = "sometimes"\n')
    with pytest.raises(ProfileError, match="latch"):
        load_io_profile(str(bad))


def test_latching_store_shows_a_press_shorter_than_a_poll_once():
    s = IoStore(load_io_profile("dio16_latch"))
    s.set_input(4, True)
    s.set_input(4, False)  # pressed and released between two reads
    assert s.read("discrete", 0, 8)[4] == 1
    assert s.read("discrete", 0, 8)[4] == 0  # seen once, then the latch is clear
    plain = IoStore(load_io_profile("dio16"))
    plain.set_input(4, True)
    plain.set_input(4, False)
    assert plain.read("discrete", 0, 8)[4] == 0  # without a latch the press is gone
    s.stuck[2] = 1
    assert s.read("discrete", 2, 1) == [1]
    with pytest.raises(ModbusError):
        s.read("discrete", 10, 8)  # past input 15
    s.jammed[3] = 0
    s.write("coil", 2, [1, 1])
    assert s.read("coil", 2, 2) == [1, 0]


def cfg_for(profile: str, port: int):
    data = dict(GOOD)
    data["simulation"] = {"control_port": free_port()}
    data["devices"] = {
        "bells": {
            "kind": "callbell_io",
            "transport": "tcp",
            "host": "127.0.0.1",
            "port": port,
            "profile": profile,
            "timeout_s": 0.3,
            "coil_check_s": 60,
            "rooms": GOOD["devices"]["bells"]["rooms"],
        }
    }
    return parse_config(data)


async def short_press_seen(profile: str) -> bool:
    cfg = cfg_for(profile, free_port())
    host = SimHost(cfg)
    await host.start(control=False)
    from suitemon.drivers.callbell_io import CallBellDriver

    drv = CallBellDriver("bells", cfg.devices["bells"])
    sim = host.sims["bells"]
    try:
        await drv.open()
        r = await drv.poll()
        assert r.values["rooms"]["uptake3"] == {
            "call": False,
            "emergency": False,
            "cancel": False,
            "door_lamp": False,
            "reassure_lamp": False,
        }
        sim.press(room="uptake3", button="call", hold_s=0.005)
        await asyncio.sleep(0.05)  # the press is over before the next poll
        r = await drv.poll()
        return r.values["rooms"]["uptake3"]["call"]
    finally:
        await drv.close()
        await host.stop()


def test_driver_sees_a_5ms_press_only_with_a_latching_module():
    assert asyncio.run(short_press_seen("dio16_latch")) is True
    assert asyncio.run(short_press_seen("dio16")) is False


def test_driver_writes_lamps_in_one_request_and_reports_the_read_back():
    async def main():
        cfg = cfg_for("dio16_latch", free_port())
        host = SimHost(cfg)
        await host.start(control=False)
        from suitemon.drivers.callbell_io import CallBellDriver

        drv = CallBellDriver("bells", cfg.devices["bells"])
        sim = host.sims["bells"]
        try:
            await drv.open()
            await drv.poll()
            drv.set_outputs(
                {"uptake3": {"door_lamp": True, "reassure_lamp": True}, "nowhere": {"door_lamp": True}}
            )
            r = await drv.poll()
            assert sim.store.coils[2:4] == [1, 1] and sim.store.coil_writes == 1  # FC 15 for both
            assert r.values["rooms"]["uptake3"]["door_lamp"] is True
            assert drv.counters["coil_writes"] == 2
            sim.jam_lamp(room="uptake3", lamp="door_lamp", value=False)
            drv.set_outputs({"uptake3": {"door_lamp": False, "reassure_lamp": True}})
            r = await drv.poll()
            assert sim.store.coil_writes == 2  # FC 05 for the one that changed
            drv.set_outputs({"uptake3": {"door_lamp": True, "reassure_lamp": True}})
            r = await drv.poll()
            # the jammed coil reads back off: the reading says so, it does not pretend
            assert r.values["rooms"]["uptake3"]["door_lamp"] is False
            writes = sim.store.coil_writes
            await drv.poll()
            assert sim.store.coil_writes == writes  # not rewritten every poll: once per coil_check_s
        finally:
            await drv.close()
            await host.stop()

    asyncio.run(main())
