"""A daemon killed (SIGKILL) in the middle of a sequence resumes it at the step it had reached."""

from __future__ import annotations

import json
import sqlite3

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

__all__ = ["targets"]


def journal_types(suite) -> list[tuple[str, str | None]]:
    db = sqlite3.connect(suite.tmp / "state" / "journal.sqlite3")
    try:
        rows = db.execute(
            "SELECT type, body FROM events WHERE type LIKE 'shutdown.%' ORDER BY seq"
        ).fetchall()
    finally:
        db.close()
    return [(t, json.loads(b)["data"].get("step")) for t, b in rows]


def test_kill9_mid_sequence_resumes_at_the_right_step_without_rerunning_acked_steps(
    make_suite, watcher, tmp_path, targets
):
    sd = short_shutdown()
    sd["steps"][1]["timeout_s"] = 30.0  # long enough to kill the daemon while it waits
    dev = ups_device(
        "rtu", tmp_path, poll_s=0.5, on_battery_poll_s=0.5, timeout_s=0.3, sim={"return_delay_s": 0.5}
    )
    suite = make_suite({"ups": dev}, extra={"areas": AREAS, "shutdown": strip_none(sd)})
    suite.start_sims("ups")
    first = suite.start_daemon(watcher)
    scanner = targets(suite, "scanner", delay_s=0.1)
    ws = targets(suite, "workstations", mode="never")
    assert send_command(watcher, suite, "rad1", "shutdown", {"action": "start", "confirm": suite.site})["ok"]

    # Step 1 is acknowledged; step 2 is commanded and waits. Kill the daemon there.
    cmd = ws.wait_for(lambda t: t.commands(), 10, what="step 2 command")[0]
    watcher.wait_for(lambda w: (s := state_of(w, suite)) and s["steps"][0]["status"] == "done", 5)
    first.kill9()

    second = suite.start_daemon(watcher, name="daemon2")
    watcher.wait_for(
        lambda w: any(
            e["data"].get("reason") == "daemon restarted"
            for e in shutdown_events(w, suite.site, "shutdown.resumed")
        ),
        10,
        what="resumed event",
    )
    # The waiting step's command comes again, with the same correlation id (the target de-duplicates).
    again = ws.wait_for(lambda t: len(t.commands()) >= 2 and t.commands()[1], 10, what="command re-sent")
    assert again["correlation_id"] == cmd["correlation_id"] and again["step"] == "workstations_off"
    resent = watcher.wait_for(lambda w: shutdown_events(w, suite.site, "shutdown.step.resent"), 5)
    assert [e["data"]["step"] for e in resent] == ["workstations_off"]

    ws.reply_now(cmd["correlation_id"])
    done = watcher.wait_for(
        lambda w: shutdown_events(w, suite.site, "shutdown.completed"), 15, what="completed"
    )[0]
    assert (
        done["data"]["state"]["sequence_id"]
        == shutdown_events(watcher, suite.site, "shutdown.started")[0]["data"]["state"]["sequence_id"]
    )
    assert [s["status"] for s in done["data"]["state"]["steps"]] == ["done", "done", "done"]

    # Step 1 was never commanded again, and the UPS got exactly one command.
    assert len(scanner.commands()) == 1
    assert [c["raw"] for c in suite.sim("ups", "state")["outlet_commands"]] == [0x188]
    assert second.alive()
    second.terminate()
    types = journal_types(suite)
    assert types.count(("shutdown.step.started", "stop_acquisitions")) == 1
    assert types.count(("shutdown.step.acked", "stop_acquisitions")) == 1
    assert types.count(("shutdown.step.started", "workstations_off")) == 1
    assert ("shutdown.step.resent", "workstations_off") in types
    assert types.index(("shutdown.resumed", None)) < types.index(("shutdown.step.resent", "workstations_off"))
