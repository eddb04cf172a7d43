"""Safe-shutdown policies end to end: simulator process (UPS on TCP or a pty), daemon process,
real Mosquitto, and shutdown targets that are real MQTT clients in the test."""

from __future__ import annotations

import pytest
from shutdown_helpers import (
    AREAS,
    send_command,
    short_shutdown,
    shutdown_events,
    state_of,
    strip_none,
    targets,
    ups_device,
)

__all__ = ["targets"]  # the fixture


def start(make_suite, watcher, tmp_path, transport, shutdown, **dev):
    d = ups_device(
        transport,
        tmp_path,
        poll_s=0.5,
        on_battery_poll_s=0.5,
        timeout_s=0.3,
        sim={"return_delay_s": 0.5},
        **dev,
    )
    suite = make_suite({"ups": d}, extra={"areas": AREAS, "shutdown": strip_none(shutdown)})
    suite.start_sims("ups")
    suite.start_daemon(watcher)
    watcher.wait_for(
        lambda w: (s := state_of(w, suite)) and s["phase"] == "idle" and s["armed"],
        10,
        what="sequencer armed",
    )
    return suite


def event(watcher, suite, type_, timeout=10.0, **where):
    def found(w):
        for e in shutdown_events(w, suite.site, type_):
            if all(e["data"].get(k) == v for k, v in where.items()):
                return e
        return None

    return watcher.wait_for(found, timeout, what=f"{type_} {where}")


def test_manual_start_needs_confirmation_and_timeout_policies_are_honoured(
    make_suite, watcher, tmp_path, targets
):
    sd = short_shutdown()
    sd["steps"][1]["on_timeout"] = "hold"
    suite = start(make_suite, watcher, tmp_path, "tcp", sd)
    scanner = targets(suite, "scanner", mode="never")
    ws = targets(suite, "workstations", mode="never")

    r = send_command(watcher, suite, "rad1", "shutdown", {"action": "start"})
    assert r["ok"] is False and "confirm" in r["error"]
    r = send_command(watcher, suite, "rad1", "shutdown", {"action": "start", "confirm": "wrong-site"})
    assert r["ok"] is False
    assert not shutdown_events(watcher, suite.site, "shutdown.started")
    r = send_command(
        watcher, suite, "rad1", "shutdown", {"action": "start", "confirm": suite.site, "reason": "test"}
    )
    assert r["ok"] is True
    started = event(watcher, suite, "shutdown.started")
    assert started["actor"] == "rad1" and started["data"]["trigger"]["name"] == "manual"

    # Step 1 never answers, policy "proceed": a timeout event, then step 2 is commanded.
    cmd = scanner.wait_for(lambda t: t.commands(), 5, what="stop command")[0]
    assert cmd["command"] == "stop_new_acquisitions" and cmd["reply_to"] == scanner.reply_topic
    assert cmd["_topic"] == scanner.command_topic and cmd["resume"] is False
    to = event(watcher, suite, "shutdown.step.timeout", step="stop_acquisitions")
    assert to["data"]["policy"] == "proceed" and to["data"]["took_s"] >= 1.5
    ws.wait_for(lambda t: t.commands(), 5, what="workstation command")

    # Step 2 never answers, policy "hold": held, a HIGH alarm, and the UPS is not commanded.
    event(watcher, suite, "shutdown.step.held", step="workstations_off")
    alarm = watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", "shutdown.held"))) and a["state"] == "active" and a,
        5,
        what="held alarm",
    )
    assert alarm["priority"] == "high" and "workstations" in alarm["message"]
    # A "failed" answer is journaled but does not end a hold.
    ws.reply_now(ws.commands()[0]["correlation_id"], status="failed", detail="agent busy")
    failed = event(watcher, suite, "shutdown.step.failed", step="workstations_off")
    assert failed["data"]["held"] is True and failed["actor"] == "workstations"
    st = state_of(watcher, suite)
    assert [s["status"] for s in st["steps"]] == ["timeout", "held", "pending"]
    assert suite.sim("ups", "state")["outlet_commands"] == []

    # A person releases it (confirmation needed); the UPS step runs and is confirmed.
    assert send_command(watcher, suite, "eng1", "shutdown", {"action": "proceed"})["ok"] is False
    r = send_command(watcher, suite, "eng1", "shutdown", {"action": "proceed", "confirm": suite.site})
    assert r["ok"] and r["result"]["released"] == "workstations_off"
    done = event(watcher, suite, "shutdown.completed")
    assert done["data"]["unacknowledged"] == ["stop_acquisitions", "workstations_off"]
    assert done["data"]["ups"]["delay_s"] == 5 and 0 <= done["data"]["ups"]["countdown_s"] <= 5
    ups = suite.sim("ups", "state")
    assert ups["pending"] == "shutdown" and [c["raw"] for c in ups["outlet_commands"]] == [0x188]
    watcher.wait_for(lambda w: w.json_of(suite.topic("alarm", "shutdown.held"))["state"] == "closed", 5)
    final = done["data"]["state"]
    assert final["phase"] == "completed" and [s["status"] for s in final["steps"]] == [
        "timeout",
        "released",
        "done",
    ]
    # Mains is present and stays: once the hold-off has passed the sequencer is armed again.
    armed = event(watcher, suite, "shutdown.armed", reason="mains stable for 1 s after a shutdown")
    assert armed["data"]["state"]["phase"] == "idle" and armed["data"]["state"]["armed"] is True


def test_comm_loss_on_battery_starts_the_sequence(make_suite, watcher, tmp_path, targets):
    sd = short_shutdown(triggers={"on_battery_s": 60.0, "runtime_below_s": False, "debounce_s": 0.5})
    suite = start(make_suite, watcher, tmp_path, "rtu", sd)
    scanner = targets(suite, "scanner", delay_s=0.1)
    targets(suite, "workstations", delay_s=0.1)
    suite.sim("ups", "mains_fail")
    watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", "ups.on_battery"))) and a["state"] == "active",
        5,
        what="on battery",
    )
    suite.sim("ups", "fault", silent=True)
    lost = watcher.wait_for(
        lambda w: (a := w.json_of(suite.topic("alarm", "ups.comm_lost"))) and a["state"] == "active" and a,
        8,
        what="comm lost",
    )
    assert lost["priority"] == "high" and lost["details"]["critical"] is True
    assert "while on battery" in lost["message"]
    started = event(watcher, suite, "shutdown.started", timeout=8)
    assert started["data"]["trigger"]["name"] == "comm_lost_on_battery"
    scanner.wait_for(lambda t: t.commands(), 5, what="first step commanded")
    # The UPS answers again: the last step reaches it and is confirmed.
    suite.sim("ups", "clear")
    done = event(watcher, suite, "shutdown.completed", timeout=15)
    assert done["data"]["ups"]["delay_s"] == 5
    assert shutdown_events(watcher, suite.site, "shutdown.step.acked")[-1]["data"]["step"] == "ups_outlets"
    # 5 s later the UPS switches its outlets off; mains is still out, so the alarm stays and says so.
    dark = watcher.wait_for(
        lambda w: (
            (a := w.json_of(suite.topic("alarm", "ups.on_battery"))) and "output is OFF" in a["message"] and a
        ),
        12,
        what="outlets off",
    )
    assert dark["state"] == "active"
    st = watcher.json_of(suite.topic("device", "ups", "state"))
    assert st["power"] == "output_off" and st["values"]["output_off"] is True


def test_short_runtime_skips_to_the_critical_steps(make_suite, watcher, tmp_path, targets):
    sd = short_shutdown(triggers={"on_battery_s": False, "runtime_below_s": 120.0, "debounce_s": 0.5})
    sd["steps"] = [
        {
            "id": "stop_acquisitions",
            "target": "scanner",
            "command": "stop_new_acquisitions",
            "timeout_s": 10.0,
        },
        {
            "id": "park_gantry",
            "target": "scanner",
            "command": "park_gantry",
            "timeout_s": 10.0,
            "critical": True,
        },
        {"id": "workstations_off", "target": "workstations", "command": "shutdown", "timeout_s": 10.0},
        {"id": "ups_outlets", "kind": "ups", "outlet_delay_s": 5, "timeout_s": 5.0},
    ]
    suite = start(make_suite, watcher, tmp_path, "tcp", sd)
    scanner = targets(suite, "scanner", delay_s=0.2)
    ws = targets(suite, "workstations", delay_s=0.2)
    # 3 % of a battery that lasts 10 min at full load: about 18 s left; the steps need up to
    # 3 x 10 s + the UPS step's 5 s + its 5 s outlet delay = 40 s.
    suite.sim("ups", "set", load_pct=100, full_runtime_s=600, charge_pct=3, low_runtime_s=2)
    suite.sim("ups", "mains_fail")
    started = event(watcher, suite, "shutdown.started")
    assert started["data"]["trigger"]["name"] == "runtime_low"
    budget = event(watcher, suite, "shutdown.budget")
    assert budget["data"]["skipped"] == ["stop_acquisitions", "workstations_off"]
    assert budget["data"]["runtime_s"] < budget["data"]["needed_s"] == pytest.approx(40, abs=1)
    assert "skipping to the critical steps" in budget["data"]["message"]
    done = event(watcher, suite, "shutdown.completed")
    assert done["data"]["skipped"] == ["stop_acquisitions", "workstations_off"]
    assert [c["command"] for c in scanner.commands()] == ["park_gantry"]
    assert ws.commands() == []
    assert suite.sim("ups", "state")["pending"] == "shutdown"


def test_after_the_point_of_no_return_mains_back_does_not_abort(make_suite, watcher, tmp_path, targets):
    sd = short_shutdown(
        triggers={"on_battery_s": 1.0, "runtime_below_s": False, "debounce_s": 0.5},
        point_of_no_return="workstations_off",
    )
    sd["steps"][1].pop("resume")
    sd["steps"][1]["timeout_s"] = 10.0
    suite = start(make_suite, watcher, tmp_path, "rtu", sd)
    targets(suite, "scanner", delay_s=0.1)
    ws = targets(suite, "workstations", mode="never")
    suite.sim("ups", "mains_fail")
    cmd = ws.wait_for(lambda t: t.commands(), 10, what="step past the point of no return")[0]
    event(watcher, suite, "shutdown.point_of_no_return", step="workstations_off")
    suite.sim("ups", "mains_restore")
    # Mains is back and stays well beyond hold_off_s (1 s) while the step waits ...
    watcher.wait_for(
        lambda w: (
            (s := w.json_of(suite.topic("device", "ups", "state"))) and s["values"].get("online") is True
        ),
        5,
        what="mains seen back",
    )
    ws.reply_now(cmd["correlation_id"])
    # ... and the sequence completes anyway: the UPS is commanded, nothing is resumed.
    done = event(watcher, suite, "shutdown.completed", timeout=10)
    assert done["data"]["state"]["past_point_of_no_return"] is True
    assert not shutdown_events(watcher, suite.site, "shutdown.aborted")
    assert [c["resume"] for c in ws.commands()] == [False]
    assert suite.sim("ups", "state")["pending"] == "shutdown"


def test_bad_replies_are_rejected_counted_journaled_and_survived(make_suite, watcher, tmp_path, targets):
    sd = short_shutdown()
    sd["steps"][0]["timeout_s"] = 10.0
    suite = start(make_suite, watcher, tmp_path, "tcp", sd)
    scanner = targets(suite, "scanner", mode="never")
    targets(suite, "workstations", delay_s=0.1)
    assert send_command(watcher, suite, "rad1", "shutdown", {"action": "start", "confirm": suite.site})["ok"]
    cid = scanner.wait_for(lambda t: t.commands(), 5)[0]["correlation_id"]
    bad = [
        b"not json",
        b"[1, 2]",
        b'{"status": "done"}',
        b'{"correlation_id": "x", "status": "maybe"}',
        b'{"correlation_id": "nope", "status": "done"}',
    ]
    for payload in bad:
        watcher.publish(suite.topic("shutdown", "reply", "scanner"), payload)
    # The scanner's correlation id, sent from the workstations' topic: refused.
    watcher.publish(
        suite.topic("shutdown", "reply", "workstations"), {"correlation_id": cid, "status": "done"}
    )
    rejected = watcher.wait_for(
        lambda w: len(r := shutdown_events(w, suite.site, "shutdown.reply.rejected")) >= 6 and r,
        10,
        what="six rejections",
    )
    errors = [e["data"]["error"] for e in rejected]
    assert "not JSON" in errors[0] and "JSON object" in errors[1] and "correlation_id" in errors[2]
    assert "status must be" in errors[3] and "unknown correlation id" in errors[4]
    assert "belongs to target 'scanner'" in errors[5] and rejected[5]["data"]["target"] == "workstations"
    assert state_of(watcher, suite)["steps"][0]["status"] == "running"
    # The real answer still works, and the daemon counted what it refused.
    scanner.reply_now(cid)
    event(watcher, suite, "shutdown.step.acked", step="stop_acquisitions")
    status = watcher.wait_for(
        lambda w: (
            (s := w.json_of(suite.topic("status")))
            and s.get("counters", {}).get("shutdown.replies_rejected") == 6
            and s
        ),
        12,
        what="counter in status",
    )
    assert status["state"] == "online"
