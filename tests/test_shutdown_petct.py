"""The PET-CT parts of the safe shutdown: the scanner does not power down under a patient on the
couch unannounced, and the UPS command targets each outlet group with its own delay, patient
supervision last. Daemon process, simulator process, real Mosquitto, targets as MQTT clients."""

from __future__ import annotations

from shutdown_helpers import send_command, short_shutdown, state_of, targets
from test_shutdown_policies import event, start

__all__ = ["targets"]


def petct_shutdown(**groups_or_none) -> dict:
    sd = short_shutdown(hold_off_s=30.0)
    sd["steps"] = [
        {
            "id": "stop_acquisitions",
            "target": "scanner",
            "command": "stop_new_acquisitions",
            "timeout_s": 3.0,
        },
        {
            "id": "patient_on_couch",
            "kind": "occupancy",
            "area": "scanner",
            "timeout_s": 20.0,
            "on_timeout": "hold",
        },
        {
            "id": "scanner_power_down",
            "target": "scanner",
            "command": "controlled_shutdown",
            "timeout_s": 3.0,
            "critical": True,
        },
        {"id": "ups_outlets", "kind": "ups", "timeout_s": 5.0},
    ]
    sd["point_of_no_return"] = "scanner_power_down"
    sd["outlet_groups"] = {
        "scanner_supply": {"ups_group": "switched_group_0", "off_delay_s": 4},
        "supervision": {"ups_group": "main_group", "off_delay_s": 30, "supervision": True},
    }
    return sd


def test_a_patient_on_the_couch_is_announced_and_holds_the_scanner_power_down(
    make_suite, watcher, tmp_path, targets
):
    suite = start(make_suite, watcher, tmp_path, "tcp", petct_shutdown())
    scanner = targets(suite, "scanner")
    assert send_command(watcher, suite, "rad1", "occupancy", {"area": "scanner", "occupied": True})["ok"]
    assert send_command(watcher, suite, "rad1", "shutdown", {"action": "start", "confirm": suite.site})["ok"]

    alarm = watcher.wait_for(
        lambda w: (
            (a := w.json_of(suite.topic("alarm", "shutdown.patient_on_couch")))
            and a["state"] == "active"
            and a
        ),
        10,
        what="patient-on-couch alarm",
    )
    assert alarm["priority"] == "high" and alarm["kind"] == "clinical" and "scanner couch" in alarm["message"]
    st = state_of(watcher, suite)
    assert [s["status"] for s in st["steps"]] == ["done", "running", "pending", "pending"]
    assert [c["command"] for c in scanner.commands()] == ["stop_new_acquisitions"]  # not powered down

    # The radiographer takes the patient off and marks the room free: the sequence goes on.
    assert send_command(watcher, suite, "rad1", "occupancy", {"area": "scanner", "occupied": False})["ok"]
    acked = event(watcher, suite, "shutdown.step.acked", step="patient_on_couch")
    assert acked["data"]["detail"] == "scanner marked free" and acked["actor"] == "system"
    watcher.wait_for(
        lambda w: w.json_of(suite.topic("alarm", "shutdown.patient_on_couch"))["state"] == "closed", 5
    )
    done = event(watcher, suite, "shutdown.completed", timeout=15)
    assert [c["command"] for c in scanner.commands()] == ["stop_new_acquisitions", "controlled_shutdown"]
    assert [s["status"] for s in done["data"]["state"]["steps"]] == ["done", "done", "done", "done"]

    # One command word to both groups; each group its own delay; supervision (main group) last.
    ups = suite.sim("ups", "state")
    assert [c["raw"] for c in ups["outlet_commands"]] == [(1 << 3) | (1 << 7) | (1 << 8) | (1 << 9)]
    result = done["data"]["ups"]["groups"]
    assert result["switched_group_0"]["delay_s"] == 4 and result["main_group"]["delay_s"] == 30
    watcher.wait_for(
        lambda w: suite.sim("ups", "state")["groups"]["switched_group_0"]["on"] is False,
        10,
        what="scanner supply off",
    )
    g = suite.sim("ups", "state")["groups"]
    assert (
        g["main_group"]["on"] is True and g["main_group"]["pending"] == "shutdown"
    )  # bells, monitors, this PC
    assert "'scanner_supply' (switched_group_0) off in 4 s" in done["data"]["state"]["message"]


def test_a_free_scanner_room_does_not_hold_the_sequence(make_suite, watcher, tmp_path, targets):
    suite = start(make_suite, watcher, tmp_path, "tcp", petct_shutdown())
    targets(suite, "scanner")
    assert send_command(watcher, suite, "rad1", "shutdown", {"action": "start", "confirm": suite.site})["ok"]
    acked = event(watcher, suite, "shutdown.step.acked", step="patient_on_couch")
    assert acked["data"]["occupied"] is False and acked["data"]["detail"] == "no patient in scanner"
    event(watcher, suite, "shutdown.completed", timeout=15)
    assert watcher.json_of(suite.topic("alarm", "shutdown.patient_on_couch")) is None
