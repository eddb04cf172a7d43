"""Dry run: rehearse the sequence with the targets and print its timeline.

Live, each target gets a rehearsal command on its own ``shutdown/rehearse/<target>``
topic (a topic a target that knows nothing of rehearsals never reads, so nothing
is ever shut down by a dry run) and its answer time is measured; the UPS simulator,
if its control socket answers, lends its present runtime for the time-budget check.
Nothing is written to the UPS. When the broker or the targets are not there, the
timeline is computed from the configuration, and the output says which it is.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from suitemon.daemon.alarms import iso
from suitemon.daemon.contract import Topics
from suitemon.daemon.mqtt import connect, make_client
from suitemon.daemon.shutdown.config import ShutdownConfig
from suitemon.daemon.shutdown.messages import command_payload, rehearse_topic, reply_filter


@dataclass
class Rehearsal:
    mode: str  # "rehearsed" | "computed"
    why: str
    acks: dict[str, float | None] = field(default_factory=dict)  # step id -> seconds (None: no answer)
    ups_state: dict[str, Any] | None = None


def _describe_triggers(sd: ShutdownConfig) -> str:
    t = sd.triggers
    parts = []
    if t.on_battery_s is not False:
        parts.append(f"on battery {t.on_battery_s:g} s")
    if t.runtime_below_s is not False:
        parts.append(f"runtime <= {t.runtime_below_s:g} s")
    if t.charge_below_pct is not False:
        parts.append(f"charge <= {t.charge_below_pct:g} %")
    if t.shutdown_imminent:
        parts.append("shutdown imminent")
    if t.comm_lost_on_battery:
        parts.append("UPS silent on battery")
    if t.manual:
        parts.append("manual (with confirmation)")
    return (
        ", ".join(parts)
        + f"; each debounced {t.debounce_s:g} s; a battery self-test or calibration with mains good never counts"
    )


def rehearse_live(cfg, wait_cap_s: float = 10.0, connect_s: float = 2.0) -> Rehearsal:
    """Send rehearsal commands to every target at once and time their answers."""
    sd: ShutdownConfig = cfg.shutdown
    m = cfg.mqtt
    topics = Topics(m.base_topic, cfg.site.id)
    # The rehearse topics are the daemon's to write (ACL): the rehearsal speaks with its account.
    client = make_client(m, f"suitemon-rehearsal-{uuid.uuid4().hex[:8]}", daemon_credentials=True)
    subscribed, lock = threading.Event(), threading.Condition()
    answers: dict[str, float] = {}
    sent: dict[str, tuple[str, float]] = {}  # correlation id -> (step id, sent at)

    def on_message(c, u, msg):
        try:
            body = json.loads(msg.payload)
            cid = body["correlation_id"]
        except (ValueError, KeyError, TypeError):
            return
        with lock:
            if cid in sent and sent[cid][0] not in answers:
                answers[sent[cid][0]] = time.monotonic() - sent[cid][1]
                lock.notify_all()

    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(reply_filter(topics), qos=1)
    client.on_subscribe = lambda *a, **k: subscribed.set()
    client.on_message = on_message
    try:
        connect(client, m, keepalive=10, blocking=True)
    except (OSError, ssl.SSLError) as err:
        return Rehearsal("computed", f"broker {m.host}:{m.port} not reachable ({err.strerror or err})")
    client.loop_start()
    try:
        if not subscribed.wait(connect_s):
            return Rehearsal("computed", f"broker {m.host}:{m.port} did not accept the subscription")
        steps = [s for s in sd.steps if s.kind == "command"]
        for s in steps:
            cid = f"rehearsal-{uuid.uuid4().hex}"
            payload = command_payload(
                topics=topics,
                site=cfg.site.id,
                target=s.target,
                correlation_id=cid,
                sequence_id=None,
                step=s.id,
                command=s.command,
                args=s.args,
                timeout_s=s.timeout_s,
                deadline=None,
                issued_at=iso(time.time()),
                rehearsal=True,
            )
            with lock:
                sent[cid] = (s.id, time.monotonic())
            client.publish(rehearse_topic(topics, s.target), json.dumps(payload), qos=1)
        deadline = time.monotonic() + max((min(s.timeout_s, wait_cap_s) for s in steps), default=0)
        with lock:
            while len(answers) < len(steps) and (left := deadline - time.monotonic()) > 0:
                lock.wait(left)
            acks = {s.id: (round(answers[s.id], 3) if s.id in answers else None) for s in steps}
    finally:
        client.disconnect()
        client.loop_stop()
    if steps and all(v is None for v in acks.values()):
        return Rehearsal(
            "computed",
            f"broker {m.host}:{m.port} reachable but no target answered the rehearsal (simulators not up?)",
            acks,
        )
    return Rehearsal(
        "rehearsed", f"targets rehearsed live over MQTT at {m.host}:{m.port}; nothing was shut down", acks
    )


def ups_sim_state(cfg, device: str) -> dict[str, Any] | None:
    from suitemon.simulators.host import send_control

    sc = cfg.simulation
    try:
        return asyncio.run(send_control(sc.control_host, sc.control_port, device, "state", timeout=1.0))
    except Exception:  # the simulators are optional for a dry run
        return None


def _ups_lines(sd: ShutdownConfig, s, i: int, t: float, flag: str) -> list[str]:
    """The ups step and, for each outlet group, when it switches off (latest first: supervision)."""
    groups = sd.ups_groups()
    if not groups:
        off = t + (s.outlet_delay_s or 0)
        return [
            f"  {f't+{t:.1f} s':>10}  step {i + 1} {s.id}: UPS '{sd.ups}' main outlet group "
            f"shutdown-and-return, delay {s.outlet_delay_s} s; confirmed by reading back the "
            f"countdown (timeout {s.timeout_s:g} s, {flag})",
            f"  {f't+{off:.1f} s':>10}  UPS turns the outlets off (at the latest t+{off + s.timeout_s:.1f} s); "
            "they come back on by themselves when mains returns",
        ]
    out = [
        f"  {f't+{t:.1f} s':>10}  step {i + 1} {s.id}: UPS '{sd.ups}' shutdown-and-return of "
        f"{len(groups)} outlet group(s) in one command, each group's countdown read back "
        f"(timeout {s.timeout_s:g} s, {flag})"
    ]
    for gid, g in sorted(groups.items(), key=lambda kv: kv[1].off_delay_s):
        off = t + g.off_delay_s
        what = f": {', '.join(g.feeds)}" if g.feeds else (f": {g.name}" if g.name else "")
        last = "; patient supervision, switches off LAST" if g.supervision else ""
        out.append(
            f"  {f't+{off:.1f} s':>10}  outlet group '{gid}' ({g.ups_group}, delay {g.off_delay_s} s) "
            f"off{last}{what}"
        )
    out.append(
        f"  {'':>10}    (each at the latest {s.timeout_s:g} s later); all come back on by themselves "
        "when mains returns"
    )
    return out


def timeline(cfg, r: Rehearsal) -> list[str]:
    sd: ShutdownConfig = cfg.shutdown
    out = [
        f"Safe-shutdown dry run for site {cfg.site.id}, UPS '{sd.ups}'",
        f"timeline: {'rehearsed live' if r.mode == 'rehearsed' else 'computed from configuration only'}"
        f" ({r.why})",
        f"triggers: {_describe_triggers(sd)}",
        f"abort: mains back and stable for {sd.hold_off_s:g} s before the point of no return "
        f"('{sd.steps[sd.pnr_index].id}')",
        "",
    ]
    t, worst = 0.0, 0.0
    out.append(f"  {'t+0.0 s':>10}  trigger fires; sequence starts")
    for i, s in enumerate(sd.steps):
        if i == sd.pnr_index:
            out.append(f"  {f't+{t:.1f} s':>10}  point of no return: from here the sequence completes")
        flag = "critical" if s.is_critical else "skippable"
        if s.kind == "ups":
            out.extend(_ups_lines(sd, s, i, t, flag))
            worst += s.timeout_s + sd.ups_off_after_s()
            break
        if s.kind == "occupancy":
            policy = (
                "then proceeds"
                if s.on_timeout == "proceed"
                else "then HOLDS until the room is free or a person releases it"
            )
            out.append(
                f"  {f't+{t:.1f} s':>10}  step {i + 1} {s.id}: if a patient is in '{s.area}' (occupancy), "
                f"announce it (HIGH alarm shutdown.patient_on_couch) and wait for the room to be "
                f"marked free (timeout {s.timeout_s:g} s, {s.on_timeout} on timeout, {flag})"
            )
            out.append(
                f"  {'':>10}    room free: done at once; occupied: worst case {s.timeout_s:g} s, {policy}"
            )
            t += s.timeout_s
            worst += s.timeout_s
            continue
        ack = r.acks.get(s.id)
        if ack is not None:
            result, dur = f"acknowledged in {ack:.2f} s (rehearsed)", ack
        else:
            policy = (
                "then proceeds"
                if s.on_timeout == "proceed"
                else "then HOLDS until acknowledged or released by a person"
            )
            seen = "no answer to the rehearsal; " if r.mode == "rehearsed" else ""
            result, dur = f"{seen}worst case {s.timeout_s:g} s without acknowledgement, {policy}", s.timeout_s
        resume = f"; resume '{s.resume}' on abort" if s.resume else ""
        out.append(
            f"  {f't+{t:.1f} s':>10}  step {i + 1} {s.id}: {s.target} <- {s.command} "
            f"(timeout {s.timeout_s:g} s, {s.on_timeout} on timeout, {flag}{resume})"
        )
        if s.description:
            out.append(f"  {'':>10}    {s.description}")
        out.append(f"  {'':>10}    {result}")
        t += dur
        worst += s.timeout_s
    out.append("")
    out.append(
        f"worst case from trigger to the suite's load off: {worst:.0f} s"
        + (" (patient supervision stays powered longer, see its group)" if sd.ups_groups() else "")
    )
    u = r.ups_state
    if u is not None:
        enough = (
            "enough" if u["runtime_s"] >= worst else "NOT enough: the sequence would skip to critical steps"
        )
        out.append(
            f"UPS simulator now: {'mains' if u['mains'] else 'ON BATTERY'}, runtime {u['runtime_s']} s, "
            f"charge {u['charge_pct']:g} % ({enough})"
        )
    else:
        out.append(
            "UPS runtime not checked (UPS simulator control not reachable); the daemon skips to the "
            "critical steps when the runtime left is shorter than the steps' worst case"
        )
    return out
