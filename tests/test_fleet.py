"""The fleet collector against the real central side: a three-node NATS cluster (deploy/central/)
and PostgreSQL, both started here on loopback. docs/fleet.md."""

from __future__ import annotations

import json
import os
import ssl
import uuid

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet_helpers import NatsCluster, Postgres
from helpers import SUITEMON, Proc, Watcher, dump_toml, wait_until
from secure_broker import Pki

from suitemon.daemon.fleet.store import NotAnEvent, parse_event

PASSWORDS = {"@PW_BRIDGE_PETCT_NORTH@": "north-pw", "@PW_BRIDGE_PETCT_SOUTH@": "south-pw",
             "@PW_FLEET_COLLECTOR@": "fleet-pw", "@PW_C_DUTY@": "duty-pw", "@PW_ADMIN@": "admin-pw"}


class Central:
    def __init__(self, d):
        self.dir = d
        self.pki = Pki(d / "pki")
        self.nats = NatsCluster(d / "nats", self.pki, PASSWORDS).start()
        self.pg = Postgres().start()
        self.nats.wait_mqtt_ready("fleet-collector", "fleet-pw")
        self.collectors: list[Proc] = []

    def fleet_file(self, cid: str, sites=("+",)) -> str:
        pw = self.dir / "fleet-mqtt-password"
        pw.write_text("fleet-pw\n")
        os.chmod(pw, 0o600)
        path = self.dir / f"fleet-{cid}.toml"
        path.write_text(dump_toml({
            "collector": {"id": cid, "status_period_s": 0.5},
            "mqtt": {"servers": self.nats.servers, "username": "fleet-collector", "password_file": str(pw),
                     "ca_file": str(self.pki.ca), "sites": list(sites)},
            "database": {"dsn": self.pg.dsn, "connect_timeout_s": 2}}))
        return str(path)

    def start_collector(self, cid: str = "a", sites=("+",)) -> Proc:
        p = Proc([*SUITEMON, "fleet", "run", "-c", self.fleet_file(cid, sites), "--log-format", "json"],
                 self.dir / f"collector-{cid}.log")
        self.collectors.append(p)
        return p

    def db(self):
        return psycopg.connect(self.pg.dsn, autocommit=True)

    def rows(self, sql: str, *args):
        with self.db() as c:
            return c.execute(sql, args).fetchall()

    def close(self):
        for p in self.collectors:
            p.close()
        self.nats.stop()
        self.pg.close()


@pytest.fixture
def central(tmp_path):
    c = Central(tmp_path)
    yield c
    c.close()


class SitePublisher:
    """Publishes as a site's bridge account straight into the cluster (QoS 1, acknowledged)."""

    def __init__(self, central: Central, site: str, node: int = 0):
        self.site = site
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{site}-{uuid.uuid4().hex[:6]}",
                                  protocol=paho.MQTTv311, clean_session=True)
        self.client.tls_set(ca_certs=str(central.pki.ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.username_pw_set(f"bridge-{site}", PASSWORDS[f"@PW_BRIDGE_{site.upper().replace('-', '_')}@"])
        self.client.connect("127.0.0.1", central.nats.mqtt_ports[node])
        self.client.loop_start()

    def publish(self, payload, topic: str | None = None) -> None:
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        self.client.publish(topic or f"suitemon/{self.site}/event", body, qos=1).wait_for_publish(10)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def event(site: str, seq: int, typ: str = "alarm.raised", **kw) -> dict:
    return {"event_id": f"{site}-{seq}", "seq": seq, "ts": "2026-12-01T10:00:00.000001Z", "site": site,
            "type": typ, "actor": "system", "alarm_id": "env.temperature.high",
            "data": kw or {"alarm": {"priority": "high", "occurrence": f"o{seq}", "type": "points.high"}}}


# -- parsing: what is not an event is refused with a reason --------------------------------------
@pytest.mark.parametrize("topic,payload,why", [
    ("suitemon/north/event", b"\xff\xfe", "not JSON"),
    ("suitemon/north/event", b"[1]", "not a JSON object"),
    ("suitemon/north/event", json.dumps({**event("south", 1)}).encode(), "not the topic's site"),
    ("suitemon/north/event", json.dumps({**event("north", 1), "seq": "7"}).encode(), "seq"),
    ("suitemon/north/event", json.dumps({**event("north", 1), "event_id": ""}).encode(), "event_id"),
    ("suitemon/north/event", json.dumps({**event("north", 1), "ts": "2026-12-01T10:00:00"}).encode(), "time zone"),
    ("suitemon/north/event", json.dumps({**event("north", 1), "ts": "yesterday"}).encode(), "ISO 8601"),
    ("suitemon/north/status", json.dumps(event("north", 1)).encode(), "not an event topic"),
])
def test_parse_event_refuses_what_is_not_an_event(topic, payload, why):
    with pytest.raises(NotAnEvent, match=why):
        parse_event(topic, payload)


def test_parse_event_keeps_the_site_order_key():
    r = parse_event("suitemon/north/event", json.dumps(event("north", 42)).encode())
    assert (r.site, r.event_id, r.seq, r.type) == ("north", "north-42", 42, "alarm.raised")
    assert r.ts.utcoffset().total_seconds() == 0


# -- the collector on the real cluster -----------------------------------------------------------
def test_collector_stores_each_event_once_rejects_junk_and_publishes_status(central):
    col = central.start_collector("a")
    status_t = "suitemon/fleet/status/a"
    desk = TlsWatcherV311(central, "c-duty", "duty-pw", topic="suitemon/fleet/status/+")
    desk.wait_for(lambda x: (s := x.json_of(status_t)) and s["state"] == "online" and s["database"] == "ok",
                  20, what="collector online")
    pub = SitePublisher(central, "petct-north")
    for seq in range(1, 21):
        pub.publish(event("petct-north", seq))
    for seq in (3, 7, 7, 20):  # at-least-once: copies arrive
        pub.publish(event("petct-north", seq))
    pub.publish(b"{not json")
    wait_until(lambda: central.rows("SELECT count(*) FROM fleet_event")[0][0] == 20
               and central.rows("SELECT count(*) FROM fleet_rejected")[0][0] == 1, 20, interval=0.2,
               what="20 events and 1 reject in PostgreSQL")
    assert [r[0] for r in central.rows("SELECT seq FROM fleet_event WHERE site = 'petct-north' ORDER BY seq")] == \
        list(range(1, 21))
    (reason,), = central.rows("SELECT reason FROM fleet_rejected")
    assert reason.startswith("not JSON")
    st = desk.wait_for(lambda x: (s := x.json_of(status_t)) and s["stored"] == 20 and s["duplicates"] == 4
                       and s["rejected"] == 1 and s, 10, what="status counts")
    assert st["backlog"] == 0 and st["collector"] == "a"
    # A clean stop says so on the retained status.
    assert col.terminate() == 0
    desk.wait_for(lambda x: (s := x.json_of(status_t)) and s["state"] == "offline", 10, what="offline status")
    pub.close()
    desk.close()


class TlsWatcherV311(Watcher):
    """The test Watcher over TLS in MQTT 3.1.1 (NATS speaks no MQTT 5)."""

    def __init__(self, central: Central, user: str, password: str, topic: str, node: int = 1):
        import threading
        self.messages, self.retained, self.cond, self.topic = [], {}, threading.Condition(), topic
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"desk-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv311, clean_session=True)
        self.client.tls_set(ca_certs=str(central.pki.ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.username_pw_set(user, password)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(self.topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", central.nats.mqtt_ports[node], keepalive=10)
        self.client.loop_start()
