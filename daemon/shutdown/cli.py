"""``suitemon shutdown``: dry run (timeline), and manual start / abort / proceed / status.

A manual action goes to the running daemon as the MQTT command
``cmd/<user>/shutdown`` and needs ``--confirm`` here; the daemon checks the
confirmation again (``"confirm": "<site id>"``), so no other client can skip it.

The operator acts as themself: their own broker account (``--user``, default the
login name), its password prompted without echo or read from ``--password-file``
(a file only they may read), TLS as ``[mqtt.tls]`` says. Never the daemon's
account. The broker's ACL ties the command topic to the login, so the journaled
actor is the authenticated user, and the daemon's roles decide whether they may.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import ssl
import stat
import sys
import threading
import uuid
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
ACTIONS = ("start", "abort", "proceed")


def add_parser(sub) -> None:
    from suitemon.daemon.cli_support import add_config_option

    s = sub.add_parser("shutdown", help="safe shutdown: dry run, or start/abort/proceed/status")
    add_config_option(s)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--dry-run", action="store_true", help="rehearse with the (simulated) targets; print a timeline"
    )
    g.add_argument("--start", action="store_true", help="start the sequence now (needs --confirm)")
    g.add_argument(
        "--abort", action="store_true", help="abort before the point of no return (needs --confirm)"
    )
    g.add_argument("--proceed", action="store_true", help="release a held step (needs --confirm)")
    g.add_argument("--status", action="store_true", help="print the daemon's sequence state")
    s.add_argument("--confirm", action="store_true", help="I mean it: required for start, abort and proceed")
    s.add_argument("--offline", action="store_true", help="dry run from the configuration only (no MQTT)")
    s.add_argument("--wait", type=float, default=10.0, help="dry run: longest wait for a target's answer (s)")
    s.add_argument("--reason", default=None, help="recorded in the journal with the command")
    s.add_argument(
        "--user", default=None, help="your broker account; the journal names it (default: login name)"
    )
    s.add_argument(
        "--password-file",
        default=None,
        help="file holding your broker password, readable by you only (else you are asked)",
    )
    # Gone: the actor is whoever the broker authenticated, not a name typed here.
    s.add_argument("--actor", default=None, help="removed: use --user (you act as your own broker account)")
    s.set_defaults(fn=cmd_shutdown)


def cmd_shutdown(args) -> int:
    from suitemon.daemon.cli_support import load_or_exit

    cfg = load_or_exit(args.config)
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


class CredentialError(Exception):
    pass


def _user(args) -> str:
    name = args.user or getpass.getuser()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,62}", name):
        raise CredentialError(f"'{name}' is not a broker account name (lower case, [a-z0-9_.-]); use --user")
    return name


def _password(args, user: str) -> str:
    if args.password_file:
        path = Path(args.password_file)
        try:
            st = path.stat()
        except OSError as err:
            raise CredentialError(f"cannot read {path}: {err.strerror}") from None
        if stat.S_IMODE(st.st_mode) & (stat.S_IRWXG | stat.S_IRWXO) or st.st_uid != os.getuid():
            raise CredentialError(
                f"{path} must be yours and readable by you only (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 0600 {path}`"
            )
        return path.read_text().strip()
    if not sys.stdin.isatty():
        raise CredentialError("no terminal to ask for your broker password: use --password-file")
    return getpass.getpass(f"broker password for {user}: ")


def _send(cfg, args, action: str) -> int:
    from suitemon.daemon.contract import Topics
    from suitemon.daemon.mqtt import connect, make_client

    if args.actor:
        print(
            "--actor is no longer accepted: you act as your own broker account (--user), and the journal "
            "names the account the broker authenticated",
            file=sys.stderr,
        )
        return EXIT_USAGE
    m = cfg.mqtt
    topics = Topics(m.base_topic, cfg.site.id)
    try:
        user = _user(args)
        password = _password(args, user)
    except CredentialError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    rid = uuid.uuid4().hex
    body = {"action": action, "request_id": rid}
    if action != "status":
        body["confirm"] = cfg.site.id
    if args.reason:
        body["reason"] = args.reason
    done, answer, refused = threading.Event(), {}, []

    def on_connect(c, u, f, rc, p=None):
        if rc.is_failure:
            refused.append(str(rc))
            done.set()
            return
        c.subscribe(topics.reply(user), qos=1)

    def on_message(c, u, msg):
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(reply, dict) and reply.get("request_id") == rid:
            answer.update(reply)
            done.set()

    def on_subscribe(c, u, mid, reason_codes, p=None):
        if any(rc.is_failure for rc in reason_codes):
            refused.append(f"the broker did not let {user} read its reply topic")
            done.set()
            return
        c.publish(topics.command(user, "shutdown"), json.dumps(body), qos=1)

    def on_publish(c, u, mid, reason_code=None, p=None):
        # MQTT 5: the broker says at once when its ACL refuses this account the shutdown topic.
        if reason_code is not None and reason_code.is_failure:
            refused.append(f"{reason_code} to send shutdown commands (docs/broker.md: named accounts only)")
            done.set()

    client = make_client(m, f"suitemon-cli-{rid[:8]}", username=user, password=password)
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        connect(client, m, keepalive=10, blocking=True)
    except (OSError, ssl.SSLError) as err:
        print(f"cannot reach the broker at {m.host}:{m.port}: {err}", file=sys.stderr)
        return EXIT_FAIL
    client.loop_start()
    try:
        if not done.wait(10):
            print(
                "no answer from the daemon within 10 s (is it running? may your account send "
                "shutdown commands? the broker drops what its ACL refuses)",
                file=sys.stderr,
            )
            return EXIT_FAIL
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        print(f"the broker refused {user}: {refused[0]}", file=sys.stderr)
        return EXIT_FAIL
    if not answer.get("ok"):
        print(f"refused: {answer.get('error')}", file=sys.stderr)
        return EXIT_FAIL
    print(json.dumps(answer.get("result"), indent=2))
    return EXIT_OK
