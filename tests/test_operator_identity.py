"""`suitemon shutdown` acts as a person over TLS; one MQTT client factory; packet limits
(issue 15, items 3 and 8), against Mosquitto run from the shipped files.

Probes: the CLI against the shipped TLS-only broker (today it ignores [mqtt.tls] and logs in
with the daemon's account), a nurse's name typed with --actor, a nurse's own account starting
the shutdown; a nurse sending a 300 KB "command" through the shipped broker, and a 1 MB one
through a broker without a limit.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time

import pytest
from conftest import events_of
from helpers import REPO
from secure_broker import DEPLOY
from shutdown_helpers import AREAS, short_shutdown, strip_none, ups_device
from test_broker_security import USERS, client, daemon_mqtt, site  # noqa: F401  (site: the TLS broker fixture)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", "shutdown", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def password_of(tmp_path, user: str, mode: int = 0o600, password: str | None = None):
    p = tmp_path / f"{user}.pw"
    p.write_text((password or USERS[user]) + "\n")
    os.chmod(p, mode)
    return str(p)


@pytest.mark.slow  # five CLI runs over TLS, each a fresh interpreter
def test_shutdown_cli_acts_as_the_operator_over_tls(site, make_suite, tmp_path):  # noqa: F811
    sd = short_shutdown()
    sd["steps"][0]["timeout_s"] = 30.0  # no target answers: time enough to abort before the next step
    suite = make_suite(
        {"ups": ups_device("tcp", tmp_path)},
        {"areas": AREAS, "shutdown": strip_none(sd), "mqtt": daemon_mqtt(site, tmp_path)},
    )
    suite.start_sims("ups")
    board = client(site, "board")
    suite.start_daemon(board)
    rad = ("--user", "radiographer1", "--password-file", password_of(tmp_path, "radiographer1"))

    r = cli("-c", str(suite.path), "--status", *rad)
    assert r.returncode == 0 and '"phase": "idle"' in r.stdout, r.stderr
    # The nurse with her own account: the broker refuses her the shutdown topic, at once.
    t0 = time.monotonic()
    r = cli(
        "-c",
        str(suite.path),
        "--abort",
        "--confirm",
        "--user",
        "nurse1",
        "--password-file",
        password_of(tmp_path, "nurse1"),
    )
    assert r.returncode == 1 and "Not authorized" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 8
    # A wrong password.
    r = cli(
        "-c",
        str(suite.path),
        "--status",
        "--user",
        "radiographer1",
        "--password-file",
        password_of(tmp_path, "nurse2", password="guess"),
    )
    assert r.returncode == 1 and "the broker refused radiographer1" in r.stderr, r.stderr

    r = cli("-c", str(suite.path), "--start", "--confirm", *rad, "--reason", "drill")
    assert r.returncode == 0, r.stderr
    started = board.wait_for(lambda w: [e for e in events_of(w, suite.site, "shutdown.started")], 10)[0]
    assert started["actor"] == "radiographer1"

    r = cli("-c", str(suite.path), "--abort", "--confirm", *rad)
    assert r.returncode == 0, r.stderr
    aborted = board.wait_for(
        lambda w: [
            e
            for e in events_of(w, suite.site, "shutdown.")
            if e["actor"] != "system" and e["type"] != "shutdown.started"
        ],
        10,
    )
    assert {e["actor"] for e in aborted} == {"radiographer1"}
    # Every CLI login the broker saw was a person's, never the daemon's account.
    logins = re.findall(r"as (suitemon-cli-\w+) \([^)]*u'([^']*)'\)", site.log_text())
    assert logins and {u for _, u in logins} <= {"radiographer1", "nurse1"}, logins
    board.close()


def test_shutdown_cli_refuses_a_typed_actor_an_exposed_password_file_and_no_password(tmp_path, capsys):
    from suitemon.daemon.cli import build_parser

    def main(argv):  # the sub-command itself: cli.main would point structlog at this test's captured stderr
        args = build_parser().parse_args(argv)
        return args.fn(args)

    base = ["shutdown", "-c", str(REPO / "examples" / "suite.toml")]
    # A typed name is not an identity.
    assert (
        main(
            [
                *base,
                "--abort",
                "--confirm",
                "--actor",
                "nurse1",
                "--user",
                "radiographer1",
                "--password-file",
                password_of(tmp_path, "radiographer1"),
            ]
        )
        == 2
    )
    assert "--actor is no longer accepted" in capsys.readouterr().err
    # A password file others can read is refused before anything connects.
    assert (
        main(
            [
                *base,
                "--status",
                "--user",
                "nurse2",
                "--password-file",
                password_of(tmp_path, "nurse2", mode=0o644),
            ]
        )
        == 2
    )
    assert "readable by you only" in capsys.readouterr().err
    # Without a terminal and without a file there is nobody to ask: refused, never the daemon's account.
    import sys as _sys

    stdin, _sys.stdin = _sys.stdin, open(os.devnull)
    try:
        assert main([*base, "--status", "--user", "radiographer1"]) == 2
    finally:
        _sys.stdin.close()
        _sys.stdin = stdin
    assert "use --password-file" in capsys.readouterr().err


def test_the_shipped_broker_refuses_an_oversize_command(site, make_suite, tmp_path):  # noqa: F811
    suite = make_suite({}, {"mqtt": daemon_mqtt(site, tmp_path)})
    board = client(site, "board")
    d = suite.start_daemon(board)
    nurse = client(site, "nurse1", topic=suite.topic("reply", "nurse1"))
    # QoS 0: paho would re-send a QoS 1 one after every reconnect, for ever.
    nurse.client.publish(suite.topic("cmd", "nurse1", "status"), b"x" * 300_000, qos=0)
    nurse.wait_for(
        lambda w: len(w.connects) >= 2 and w.client.is_connected(),
        10,
        what="the broker dropping and the nurse reconnecting",
    )
    assert nurse.connects[:2] == ["Success", "Success"], nurse.connects
    nurse.publish(suite.topic("cmd", "nurse1", "status"), {"request_id": "small"})
    reply = nurse.wait_for(lambda w: w.json_of(suite.topic("reply", "nurse1")), 10, what="reply")
    assert reply["ok"] and reply["request_id"] == "small"
    assert not [e for e in events_of(board, suite.site, "command.rejected")], "the big one reached the daemon"
    assert "max_packet_size" in (DEPLOY / "suitemon.conf").read_text()
    assert d.alive()
    nurse.close()
    board.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_the_daemon_asks_the_broker_not_to_send_it_oversize_packets(make_suite, watcher, protocol):
    suite = make_suite({}, {"mqtt": {"protocol": protocol}})
    d = suite.start_daemon(watcher)  # the session broker has no max_packet_size of its own
    watcher.client.publish(suite.topic("cmd", "nurse1", "status"), b"x" * 1_000_000, qos=1).wait_for_publish(
        10
    )
    watcher.publish(suite.topic("cmd", "nurse1", "status"), {"request_id": "after"})
    reply_t = suite.topic("reply", "nurse1")
    replies = watcher.wait_for(
        lambda w: [p for t, p, *_ in w.messages if t == reply_t and b'"after"' in p], 10
    )
    assert len(replies) == 1
    # The megabyte was never decoded: no rejection, nothing journaled. MQTT 5: the broker did not
    # even send it (Maximum Packet Size); MQTT 3.1.1 cannot ask, so the network thread drops it.
    assert [p for t, p, *_ in watcher.messages if t == reply_t] == replies
    assert not events_of(watcher, suite.site, "command.rejected")
    counters = json.loads(replies[0])["result"]["counters"]
    assert counters.get("mqtt.dropped_oversize", 0) == (1 if protocol == "3.1.1" else 0)
    assert "commands.oversize" not in counters
    assert d.alive()


# The fleet collector runs on the central host, not the suite PC: it reads a fleet file (no [mqtt]
# section, its own TLS and account) and acknowledges each message only after PostgreSQL commits it
# (paho manual_ack), which a site's client never does. Its TLS settings are tested in test_fleet.py.
CENTRAL_SIDE = {"daemon/fleet/config.py"}  # central_client: the collector and `fleet setup` use it


def test_every_part_that_connects_builds_its_client_with_the_one_factory():
    offenders = []
    for path in [*REPO.glob("daemon/**/*.py"), *REPO.glob("simulators/**/*.py")]:
        if path == REPO / "daemon" / "mqtt.py" or str(path.relative_to(REPO)) in CENTRAL_SIDE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "Client"
                and getattr(node.func.value, "id", "") == "paho"
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == [], "build MQTT clients with suitemon.daemon.mqtt.make_client: " + ", ".join(
        offenders
    )


def test_the_factory_applies_tls_and_hostname_checks_as_configured(site):  # noqa: F811
    from suitemon.daemon.config import MqttConfig
    from suitemon.daemon.mqtt import MAX_PACKET, connect_properties, make_client

    mcfg = MqttConfig(host="127.0.0.1", port=site.port, tls={"ca_file": site.pki.ca})
    c = make_client(mcfg, "factory-test", username="nurse1", password=USERS["nurse1"])
    assert c._ssl_context is not None and c._ssl_context.check_hostname
    assert connect_properties(mcfg).MaximumPacketSize == MAX_PACKET
    lax = make_client(
        mcfg.model_copy(update={"tls": mcfg.tls.model_copy(update={"insecure_skip_hostname": True})}),
        "factory-test-2",
    )
    assert not lax._ssl_context.check_hostname


@pytest.mark.parametrize("unit", ["suitemon.service", "suitemon-sim.service"])
def test_units_bound_memory(unit):
    text = (REPO / "systemd" / unit).read_text()
    assert re.search(r"^MemoryMax=\d+[MG]$", text, re.M) and re.search(r"^MemoryHigh=\d+[MG]$", text, re.M)
