"""``suitemon shutdown``: dry run (timeline), and manual start / abort / proceed / status.

A manual action goes to the running daemon as the MQTT command
``cmd/<actor>/shutdown`` and needs ``--confirm`` here; the daemon checks the
confirmation again (``"confirm": "<site id>"``), so no other client can skip it.
"""

from __future__ import annotations

import getpass
import json
import re
import sys
import threading
import uuid

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
ACTIONS = ("start", "abort", "proceed")


def add_parser(sub) -> None:
    from suitemon.daemon.cli import add_config_option
    s = sub.add_parser("shutdown", help="safe shutdown: dry run, or start/abort/proceed/status")
    add_config_option(s)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--dry-run", action="store_true", help="rehearse with the (simulated) targets; print a timeline")
    g.add_argument("--start", action="store_true", help="start the sequence now (needs --confirm)")
    g.add_argument("--abort", action="store_true", help="abort before the point of no return (needs --confirm)")
    g.add_argument("--proceed", action="store_true", help="release a held step (needs --confirm)")
    g.add_argument("--status", action="store_true", help="print the daemon's sequence state")
    s.add_argument("--confirm", action="store_true", help="I mean it: required for start, abort and proceed")
    s.add_argument("--offline", action="store_true", help="dry run from the configuration only (no MQTT)")
    s.add_argument("--wait", type=float, default=10.0, help="dry run: longest wait for a target's answer (s)")
    s.add_argument("--reason", default=None, help="recorded in the journal with the command")
    s.add_argument("--actor", default=None, help="user name the command is sent as (default: login name)")
    s.set_defaults(fn=cmd_shutdown)


def cmd_shutdown(args) -> int:
    from suitemon.daemon.cli import _load_or_exit
    cfg = _load_or_exit(args.config)
    if cfg.shutdown is None:
        print(f"{args.config}: no [shutdown] section", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        return _dry_run(cfg, args)
    action = next((a for a in ACTIONS if getattr(args, a)), "status")
    if action != "status" and not args.confirm:
        print(f"refusing to {action} the safe-shutdown sequence without --confirm", file=sys.stderr)
        return EXIT_USAGE
    return _send(cfg, args, action)


def _dry_run(cfg, args) -> int:
    from suitemon.daemon.shutdown.rehearsal import Rehearsal, rehearse_live, timeline, ups_sim_state
    if args.offline:
        r = Rehearsal("computed", "--offline: no MQTT, no simulators")
    else:
        r = rehearse_live(cfg, wait_cap_s=args.wait)
        r.ups_state = ups_sim_state(cfg, cfg.shutdown.ups)
    print("\n".join(timeline(cfg, r)))
    return EXIT_OK


def _actor(args) -> str:
    name = args.actor or getpass.getuser()
    name = re.sub(r"[^a-z0-9_.-]", "-", name.lower()).strip("-") or "cli"
    return name[:63]


def _send(cfg, args, action: str) -> int:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from suitemon.daemon.contract import Topics
    m = cfg.mqtt
    topics = Topics(m.base_topic, cfg.site.id)
    actor = _actor(args)
    rid = uuid.uuid4().hex
    body = {"action": action, "request_id": rid}
    if action != "status":
        body["confirm"] = cfg.site.id
    if args.reason:
        body["reason"] = args.reason
    done, answer = threading.Event(), {}

    def on_message(c, u, msg):
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            return
        if reply.get("request_id") == rid:
            answer.update(reply)
            done.set()

    def on_subscribe(c, u, *a, **k):
        c.publish(topics.command(actor, "shutdown"), json.dumps(body), qos=1)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"suitemon-cli-{rid[:8]}",
                         protocol=paho.MQTTv5 if m.protocol == "5" else paho.MQTTv311)
    if m.username:
        client.username_pw_set(m.username, m.password_file.read_text().strip() if m.password_file else None)
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topics.reply(actor), qos=1)
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(m.host, m.port, keepalive=10)
    except OSError as err:
        print(f"cannot reach the broker at {m.host}:{m.port}: {err}", file=sys.stderr)
        return EXIT_FAIL
    client.loop_start()
    try:
        if not done.wait(10):
            print("no answer from the daemon within 10 s (is it running?)", file=sys.stderr)
            return EXIT_FAIL
    finally:
        client.disconnect()
        client.loop_stop()
    if not answer.get("ok"):
        print(f"refused: {answer.get('error')}", file=sys.stderr)
        return EXIT_FAIL
    print(json.dumps(answer.get("result"), indent=2))
    return EXIT_OK
