"""Many sites: the shipped bridge forwards a site to a central broker; a cut link loses nothing.

Two real Mosquittos on loopback, both configured from deploy/mosquitto/ with TLS and
passwords; the bridge reaches central through a TCP relay that the test can cut (a WAN
outage), and in another test the central broker itself is stopped and started again.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from helpers import free_port
from schema_check import problems
from secure_broker import (
    DEPLOY,
    Broker,
    Pki,
    TcpProxy,
    TlsWatcher,
    bridge_conf,
    central_broker_conf,
    password_file,
    site_broker_conf,
)
from service_helpers import points_device

SITE = "petct-north"  # a site the shipped central ACL already has a bridge account for
SITE_USERS = {"suitemon": "daemon-pw", "nurse1": "n1-pw", "board": "board-pw"}
CENTRAL_USERS = {f"bridge-{SITE}": "bridge-pw", "c.boss": "boss-pw"}


class Sites:
    def __init__(self, d):
        self.pki = Pki(d / "pki")
        cs, ss = d / "central-secrets", d / "site-secrets"
        cs.mkdir()
        ss.mkdir()
        password_file(cs / "passwd", CENTRAL_USERS)
        shutil.copy(DEPLOY / "central-acl", cs / "central-acl")
        password_file(ss / "passwd", SITE_USERS)
        shutil.copy(DEPLOY / "acl", ss / "acl")
        self.central_port, site_port = free_port(), free_port()
        self.central = Broker(
            d / "central", central_broker_conf(self.pki, cs, self.central_port), self.central_port
        ).start()
        self.link = TcpProxy(self.central_port).start()
        conf = (
            site_broker_conf(self.pki, ss, site_port)
            + "\n"
            + bridge_conf(self.pki, SITE, self.link.port, CENTRAL_USERS[f"bridge-{SITE}"])
        )
        self.site = Broker(d / "site", conf, site_port).start()

    def watcher(self, where: str, user: str, **kw) -> TlsWatcher:
        port, users = (
            (self.central_port, CENTRAL_USERS) if where == "central" else (self.site.port, SITE_USERS)
        )
        w = TlsWatcher(port, self.pki.ca, user, users[user], **kw)
        w.wait_for(lambda x: x.connects and x.connects[-1] == "Success", 10, what=f"{user}@{where}")
        return w

    def daemon_mqtt(self, tmp_path) -> dict:
        pw = tmp_path / "mqtt-password"
        pw.write_text(SITE_USERS["suitemon"])
        os.chmod(pw, 0o600)
        return {
            "port": self.site.port,
            "username": "suitemon",
            "password_file": str(pw),
            "tls": {"ca_file": str(self.pki.ca)},
        }

    def close(self):
        self.link.cut()
        self.site.stop()
        self.central.stop()


@pytest.fixture
def sites(tmp_path):
    s = Sites(tmp_path / "brokers")
    yield s
    s.close()


def seqs(w, site=SITE) -> list[int]:
    return [e["seq"] for e in w.events(site)]


def start_site(sites, make_suite, tmp_path):
    suite = make_suite({"env": points_device()}, {"site": {"id": SITE}, "mqtt": sites.daemon_mqtt(tmp_path)})
    suite.site = SITE
    suite.start_sims()
    central = sites.watcher("central", "c.boss", persistent=True, client_id="central-display")
    d = suite.start_daemon(central)  # "online" seen centrally: it came over the bridge
    return suite, central, d


def raised_seen(central) -> int:
    """Wait for the alarm's event (it follows the retained record) and return the last seq seen."""
    central.wait_for(
        lambda w: any(e["type"] == "alarm.raised" for e in w.events(SITE)), 10, what="alarm.raised centrally"
    )
    return max(seqs(central))


def flap(suite, site_observer, n: int) -> None:
    """Drive the limit alarm through n changes, each seen at the site before the next."""
    alarm_t = suite.topic("alarm", "env.temperature.high")
    for i in range(n):
        high = i % 2 == 1
        suite.sim("env", "set", temperature=29.0 if high else 25.0)
        want = "active" if high else "closed"
        site_observer.wait_for(
            lambda w, want=want: (a := w.json_of(alarm_t)) and a["state"] == want,
            10,
            what=f"alarm {want} at the site",
        )


def test_site_alarm_appears_centrally_and_a_cut_link_loses_nothing(sites, make_suite, tmp_path):
    suite, central, d = start_site(sites, make_suite, tmp_path)
    suite.sim("env", "set", temperature=29.0)
    t0 = time.monotonic()
    # The alarm's record reaches central inside its event (alarm/<id> stays at the site: docs/fleet.md).
    central.wait_for(
        lambda w: any(
            e["type"] == "alarm.raised"
            and e["data"]["alarm"]["alarm_id"] == "env.temperature.high"
            and e["data"]["alarm"]["state"] == "active"
            for e in w.events(SITE)
        ),
        10,
        what="alarm centrally",
    )
    print(f"site alarm seen centrally after {time.monotonic() - t0:.3f} s")
    board = sites.watcher("site", "board")
    before = raised_seen(central)

    sites.link.cut()
    central.wait_for(
        lambda w: w.retained.get(suite.topic("bridge", "central")) == b"0",
        10,
        what="central told the bridge is down (its will)",
    )
    flap(suite, board, 6)
    # A command from the central desk while the link is down waits for it at central.
    boss = sites.watcher("central", "c.boss", topic="")
    assert (
        str(boss.publish_acked(suite.topic("cmd", "c.boss", "ack"), {"alarm_id": "env.temperature.high"}))
        == "Success"
    )
    board.wait_for(lambda w: len([s for s in seqs(w) if s > before]) >= 6, 10, what="events at the site")
    cut_seqs = [s for s in seqs(central) if s > before]
    assert not cut_seqs, "events crossed a cut link?"

    sites.link.resume()
    site_seqs = sorted(set(seqs(board)))
    last = max(site_seqs)
    central.wait_for(
        lambda w: set(range(before + 1, last + 1)) <= set(seqs(w)),
        20,
        what="every event of the outage centrally",
    )
    got = sorted(set(seqs(central)))
    assert got == list(range(got[0], got[-1] + 1)), "a gap in the central event stream"
    # The central command arrived once the link was back, with the central user as the actor.
    ev = board.wait_for(
        lambda w: next(
            (
                e
                for e in w.events(SITE)
                if e["type"] == "alarm.acknowledged"
                or (e["type"] == "command.rejected" and e["actor"] == "c.boss")
            ),
            None,
        ),
        20,
        what="the central command at the site",
    )
    assert ev["actor"] == "c.boss"
    assert sites.link.connections >= 2  # the bridge really reconnected through the relay
    for w in (board, boss):
        w.close()
    central.close()
    assert d.alive()
    # What crossed the bridge still honours the MQTT contract (bridge/+ included).
    assert not problems(central.messages + board.messages)
    # Nothing with a '.' in its topic crossed (a NATS central drops the link on one).
    assert not [t for t, *_ in central.messages if "." in t]
    assert not [t for t, *_ in central.messages if t.startswith(suite.topic("alarm"))]


def test_central_broker_restart_loses_nothing_and_commands_stay_with_their_site(sites, make_suite, tmp_path):
    suite, central, d = start_site(sites, make_suite, tmp_path)
    site_all = sites.watcher("site", "suitemon", client_id="site-observer")  # sees every topic at the site
    suite.sim("env", "set", temperature=29.0)
    before = raised_seen(central)

    sites.central.stop(graceful=True)  # saves sessions: the display's and the bridge's
    flap(suite, site_all, 6)
    site_all.wait_for(lambda w: len([s for s in seqs(w) if s > before]) >= 6, 10, what="events at the site")
    sites.central.start()
    last = max(seqs(site_all))
    central.wait_for(
        lambda w: set(range(before + 1, last + 1)) <= set(seqs(w)),
        30,
        what="every event of the outage centrally",
    )

    # Commands come down for this site only.
    boss = sites.watcher("central", "c.boss", topic="")
    assert str(boss.publish_acked("suitemon/petct-south/cmd/c.boss/ack", {"alarm_id": "x"})) == "Success"
    assert str(boss.publish_acked(suite.topic("cmd", "c.boss", "ping-marker"), {})) == "Success"
    site_all.wait_for(
        lambda w: any(t.endswith("/cmd/c.boss/ping-marker") for t, *_ in w.messages),
        10,
        what="this site's command at the site",
    )
    # The daemon's answer (unknown verb) comes back after it handled the command: by then an
    # echo between the brokers would have delivered the command again.
    site_all.wait_for(
        lambda w: (r := w.json_of(suite.topic("reply", "c.boss"))) and r["verb"] == "ping-marker",
        10,
        what="the daemon's reply",
    )
    assert len([t for t, *_ in site_all.messages if t.endswith("/cmd/c.boss/ping-marker")]) == 1
    assert not [t for t, *_ in site_all.messages if t.startswith("suitemon/petct-south/")]
    # A bridge may not speak for itself: its own name as an actor is refused at central.
    bridge_as_actor = TlsWatcher(
        sites.central_port,
        sites.pki.ca,
        f"bridge-{SITE}",
        CENTRAL_USERS[f"bridge-{SITE}"],
        topic="",
        client_id="bridge-impostor",
    )
    bridge_as_actor.wait_for(lambda x: x.connects, 10, what="bridge account connected")
    assert (
        str(bridge_as_actor.publish_acked(suite.topic("cmd", f"bridge-{SITE}", "ack"), {"alarm_id": "x"}))
        == "Not authorized"
    )
    for w in (boss, site_all, bridge_as_actor):
        w.close()
    central.close()
    assert d.alive()
