"""The shipped Mosquitto configuration and ACL, on a real broker with TLS (test CA made here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, SUITEMON, free_port
from schema_check import problems
from secure_broker import DEPLOY, Broker, Pki, TlsWatcher, connect_result, password_file, site_broker_conf
from service_helpers import points_device

from suitemon.daemon.config import parse_config
from suitemon.daemon.secret_files import secret_file_issues, secret_paths

USERS = {
    "suitemon": "daemon-pw",
    "nurse1": "n1-pw",
    "nurse2": "n2-pw",
    "board": "board-pw",
    "ct-console": "ct-pw",
    "radiographer1": "r1-pw",
}
NOT_AUTHORIZED = "Not authorized"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("site-broker")
    pki = Pki(d / "pki")
    secrets = d / "secrets"
    secrets.mkdir()
    password_file(secrets / "passwd", USERS)
    shutil.copy(DEPLOY / "acl", secrets / "acl")  # the shipped ACL, unchanged
    port = free_port()
    b = Broker(d / "run", site_broker_conf(pki, secrets, port), port).start()
    b.pki, b.secrets = pki, secrets
    yield b
    b.stop()


def daemon_mqtt(site, tmp_path, mode=0o600) -> dict:
    pw = tmp_path / "mqtt-password"
    pw.write_text(USERS["suitemon"] + "\n")
    os.chmod(pw, mode)
    return {
        "port": site.port,
        "username": "suitemon",
        "password_file": str(pw),
        "tls": {"ca_file": str(site.pki.ca)},
    }


def client(site, user, topic="suitemon/#", **kw) -> TlsWatcher:
    w = TlsWatcher(site.port, site.pki.ca, user, USERS.get(user, "wrong"), topic=topic, **kw)
    w.wait_for(lambda x: x.connects, 10, what=f"{user} connected")
    assert w.connects[0] == "Success", w.connects
    return w


def test_anonymous_wrong_password_and_plain_tcp_are_refused(site):
    assert connect_result(site.port, site.pki.ca, None, None) == NOT_AUTHORIZED
    assert connect_result(site.port, site.pki.ca, "nurse1", "guess") in (
        NOT_AUTHORIZED,
        "Bad user name or password",
    )
    # Without TLS the broker does not even speak MQTT to us.
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.connect("127.0.0.1", site.port, keepalive=5)
    rc = c.loop(timeout=2.0)
    rc2 = c.loop(timeout=2.0)
    assert not c.is_connected(), (rc, rc2)
    c.disconnect()


def test_only_the_authenticated_user_acts_and_the_journal_names_them(site, make_suite, tmp_path):
    suite = make_suite({"env": points_device()}, {"mqtt": daemon_mqtt(site, tmp_path)})
    suite.start_sims()
    board = client(site, "board")
    d = suite.start_daemon(board)  # online over TLS with the password file
    suite.sim("env", "set", temperature=29.0)
    alarm_t = suite.topic("alarm", "env.temperature.high")
    board.wait_for(lambda w: (a := w.json_of(alarm_t)) and a["state"] == "active", 10, what="alarm")

    nurse1 = client(site, "nurse1", topic=suite.topic("reply", "#"))
    ct = client(site, "ct-console", topic="")
    ack = {"alarm_id": "env.temperature.high", "actor": "nurse2"}  # a payload cannot choose the actor
    # Someone else's command, a shutdown command, a forged alarm: refused by the broker.
    assert str(nurse1.publish_acked(suite.topic("cmd", "nurse2", "ack"), ack)) == NOT_AUTHORIZED
    assert (
        str(nurse1.publish_acked(suite.topic("shutdown", "cmd", "ct-console"), {"step": "shutdown"}))
        == NOT_AUTHORIZED
    )
    # Nor may she start the safe shutdown in her own name: that is for the accounts named in the ACL.
    start = {"action": "start", "confirm": suite.site}
    assert str(nurse1.publish_acked(suite.topic("cmd", "nurse1", "shutdown"), start)) == NOT_AUTHORIZED
    assert str(nurse1.publish_acked(alarm_t, {"state": "closed"})) == NOT_AUTHORIZED
    assert str(nurse1.publish_acked(suite.topic("event"), {"type": "alarm.reset"})) == NOT_AUTHORIZED
    # A shutdown target answers its own steps only, and sends no staff commands.
    assert str(ct.publish_acked(suite.topic("shutdown", "reply", "ct-console"), {"ok": True})) == "Success"
    assert (
        str(ct.publish_acked(suite.topic("shutdown", "reply", "pet-recon"), {"ok": True})) == NOT_AUTHORIZED
    )
    assert str(ct.publish_acked(suite.topic("cmd", "ct-console", "ack"), ack)) == NOT_AUTHORIZED
    # The nurse's own ack goes through, and the journal names the authenticated user.
    assert (
        str(nurse1.publish_acked(suite.topic("cmd", "nurse1", "ack"), {**ack, "request_id": "r1"}))
        == "Success"
    )
    ev = board.wait_for(
        lambda w: next((e for e in w.events(suite.site) if e["type"] == "alarm.acknowledged"), None),
        10,
        what="ack event",
    )
    assert ev["actor"] == "nurse1" and ev["data"]["alarm"]["acknowledged_by"] == "nurse1"
    reply = nurse1.wait_for(lambda w: w.json_of(suite.topic("reply", "nurse1")), 10, what="reply to nurse1")
    assert reply["ok"] and reply["request_id"] == "r1"
    assert board.json_of(alarm_t)["state"] == "acknowledged"  # the forged "closed" never landed
    # A named account's shutdown command reaches the daemon (no [shutdown] here: it says so).
    rad = client(site, "radiographer1", topic=suite.topic("reply", "radiographer1"))
    assert str(rad.publish_acked(suite.topic("cmd", "radiographer1", "shutdown"), start)) == "Success"
    answer = rad.wait_for(lambda w: w.json_of(suite.topic("reply", "radiographer1")), 10, what="reply")
    assert answer["verb"] == "shutdown"
    rad.close()
    actors = {e["actor"] for e in board.events(suite.site)}
    assert not actors & {"nurse2", "ct-console"}
    assert [
        e
        for e in board.events(suite.site)
        if e["type"] == "command.rejected" and e["actor"] == "nurse1" and e["data"]["verb"] == "shutdown"
    ] == []
    for c in (nurse1, ct, board):
        c.close()
    assert d.alive()
    assert not problems(board.messages + nurse1.messages)


@pytest.mark.parametrize(
    "mode,phrase", [(0o644, "accessible to every user"), (0o620, "writable by its group")]
)
def test_daemon_refuses_to_start_with_an_exposed_password_file(site, make_suite, tmp_path, mode, phrase):
    suite = make_suite({}, {"mqtt": daemon_mqtt(site, tmp_path, mode)})
    r = subprocess.run(
        [*SUITEMON, "run", "-c", str(suite.path)], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert r.returncode == 2, r.stderr
    assert "mqtt.password_file:" in r.stderr and phrase in r.stderr
    assert not (suite.tmp / "state" / "journal.sqlite3").exists()  # refused before anything opened


def test_secret_file_rules(tmp_path):
    def issues(**mqtt):
        cfg = parse_config({"site": {"id": "s", "name": "s"}, "mqtt": mqtt})
        return [str(i) for i in secret_file_issues(cfg)]

    good, key = tmp_path / "pw", tmp_path / "client.key"
    good.write_text("secret")
    key.write_text("-----BEGIN PRIVATE KEY-----")
    os.chmod(good, 0o640)  # root:suitemon 0640 is allowed: group read only
    os.chmod(key, 0o604)
    tls = {"ca_file": str(tmp_path / "ca.crt"), "key_file": str(key)}
    assert issues(username="suitemon", password_file=str(good)) == []
    assert issues(username="suitemon", password_file="relative/pw") == [
        "mqtt.password_file: relative/pw must be an absolute path"
    ]
    assert issues(password_file=str(good)) == ["mqtt.username: password_file is set but username is not"]
    assert "cannot read" in issues(username="u", password_file=str(tmp_path / "missing"))[0]
    assert issues(tls=tls)[0].startswith(f"mqtt.tls.key_file: {key} is accessible to every user")
    # Any section's secret is held to the same rule (a feature's own broker account, say).
    assert list(
        secret_paths(
            {
                "board": {"observer_password_file": "/x/pw", "title": "t"},
                "tls": {"ca_file": "/x/ca.crt", "key_file": "/x/k"},
            }
        )
    ) == [("board.observer_password_file", Path("/x/pw")), ("tls.key_file", Path("/x/k"))]
    (tmp_path / "empty").write_text("")
    os.chmod(tmp_path / "empty", 0o600)
    assert issues(username="u", password_file=str(tmp_path / "empty")) == [
        f"mqtt.password_file: {tmp_path / 'empty'} is empty"
    ]
