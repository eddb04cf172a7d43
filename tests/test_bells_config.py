"""Call-bell configuration: check-config names every wiring or alarm-type mistake by its key path."""

from __future__ import annotations

import copy

import pytest
from test_config import EXAMPLE, run_cli

from suitemon.daemon.config import ConfigError, parse_config

ROOM = {"call": 4, "emergency": 5, "cancel": 6, "door_lamp": 2, "reassure_lamp": 3}

GOOD = {
    "site": {"id": "s", "name": "S"},
    "areas": {
        "uptake1": {"name": "Uptake 1", "kind": "uptake_room"},
        "uptake3": {"name": "Uptake 3", "kind": "uptake_room"},
    },
    "roles": {"nurse": {"name": "N", "recipients": ["n1"]}, "resus": {"name": "R", "recipients": ["sw"]}},
    "ladders": {
        "det": {
            "steps": [
                {"role": "nurse", "timeout_s": 30},
                {"role": "resus", "timeout_s": 60, "failsafe": True, "critical_care": True},
            ]
        }
    },
    "protocols": {"det": {"who": "Resus", "number": "2222", "location": "Block C", "first_actions": ["Go"]}},
    "alarm_types": {
        "bells.emergency": {
            "priority": "high",
            "kind": "clinical",
            "latching": True,
            "emergency": True,
            "ladder": "det",
            "protocol": "det",
        }
    },
    "devices": {
        "bells": {"kind": "callbell_io", "transport": "tcp", "port": 5031, "rooms": {"uptake3": dict(ROOM)}}
    },
}


def issues(mutate) -> set[str]:
    data = copy.deepcopy(GOOD)
    mutate(data)
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    return {str(i) for i in e.value.issues}


def paths(mutate) -> set[str]:
    return {i.split(": ", 1)[0] for i in issues(mutate)}


def test_good_config_is_valid_with_sensible_defaults():
    cfg = parse_config(copy.deepcopy(GOOD))
    dev = cfg.devices["bells"]
    assert dev.poll_s == 0.1 and dev.comm_loss_after == 3 and dev.profile == "dio16_latch"
    assert dev.test_interval_s == 7 * 86400 and dev.io_profile.latching


def test_missing_emergency_type_points_at_the_device():
    got = issues(lambda d: d["alarm_types"].clear())
    assert len(got) == 1
    (msg,) = got
    assert msg.startswith("devices.bells.emergency_type: alarm type 'bells.emergency' is not configured")


def test_emergency_type_must_be_emergency_with_protocol_and_ladder():
    def m(d):
        d["alarm_types"]["bells.emergency"] = {"priority": "medium", "kind": "clinical"}

    assert paths(m) == {
        "alarm_types.bells.emergency.emergency",
        "alarm_types.bells.emergency.protocol",
        "alarm_types.bells.emergency.ladder",
        "alarm_types.bells.emergency.priority",
        "alarm_types.bells.emergency.latching",
    }


def test_emergency_without_protocol_is_reported_once():
    def m(d):
        del d["alarm_types"]["bells.emergency"]["protocol"]

    assert issues(m) == {
        "alarm_types.bells.emergency.protocol: an emergency alarm type needs the site's emergency protocol"
    }


def test_emergency_without_ladder():
    def m(d):
        del d["alarm_types"]["bells.emergency"]["ladder"]

    assert paths(m) == {"alarm_types.bells.emergency.ladder"}


def test_emergency_ladder_needs_a_critical_care_step():
    def m(d):
        d["ladders"]["det"]["steps"][1]["critical_care"] = False

    assert paths(m) == {"ladders.det.steps"}


def test_call_type_must_latch():
    def m(d):
        d["alarm_types"]["bells.call"] = {"priority": "medium", "kind": "clinical", "latching": False}

    assert paths(m) == {"alarm_types.bells.call.latching"}


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda d: d["devices"]["bells"]["rooms"].update(
                uptake9=dict(ROOM, call=0, emergency=1, cancel=2, door_lamp=0, reassure_lamp=1)
            ),
            {"devices.bells.rooms.uptake9"},
        ),
        (
            lambda d: d["devices"]["bells"]["rooms"]["uptake3"].update(call=16),
            {"devices.bells.rooms.uptake3.call"},
        ),
        (
            lambda d: d["devices"]["bells"]["rooms"]["uptake3"].update(door_lamp=16),
            {"devices.bells.rooms.uptake3.door_lamp"},
        ),
        (
            lambda d: d["devices"]["bells"]["rooms"].update(uptake1={"call": 4, "door_lamp": 3}),
            {"devices.bells.rooms.uptake1.call", "devices.bells.rooms.uptake1.door_lamp"},
        ),
        (
            lambda d: d["devices"]["bells"]["rooms"].update(uptake1={"cancel": 9}),
            {"devices.bells.rooms.uptake1"},
        ),
        (lambda d: d["devices"]["bells"].update(profile="no_such_module"), {"devices.bells.profile"}),
        (
            lambda d: d["devices"]["bells"]["rooms"]["uptake3"].update(bell=3),
            {"devices.bells.rooms.uptake3.bell"},
        ),
        (lambda d: d["devices"]["bells"].update(poll_s=0.01), {"devices.bells.poll_s"}),
        (lambda d: d["devices"]["bells"].update(rooms={}), {"devices.bells.rooms"}),
    ],
)
def test_wiring_mistakes_have_key_paths(mutate, expected):
    assert paths(mutate) == expected


def test_room_served_by_two_modules():
    def m(d):
        d["devices"]["bells2"] = {
            "kind": "callbell_io",
            "transport": "tcp",
            "port": 5032,
            "rooms": {"uptake3": dict(ROOM)},
        }

    got = issues(m)
    assert got == {"devices.bells2.rooms.uptake3: room is already served by devices.bells"}


def test_check_config_cli_fails_without_protocol_with_key_path(tmp_path):
    text = EXAMPLE.read_text().replace('protocol = "deterioration"\n', "", 1)
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    r = run_cli("check-config", str(bad))
    assert r.returncode == 2
    assert (
        "alarm_types.bells.emergency.protocol: an emergency alarm type needs the site's emergency protocol"
        in r.stderr
    ), r.stderr
