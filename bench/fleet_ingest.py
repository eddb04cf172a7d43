"""Fleet ingest: events/s the collector stores into PostgreSQL, and the lag from a site to the database.

The real central side on loopback (three NATS nodes from deploy/central/, PostgreSQL, `suitemon fleet
run` reading the event stream through the shared durable consumer), fed by a load generator that publishes as each site's bridge account (QoS 1, TLS) the event mix
of the shipped scenarios, with payloads of the daemon's sizes. For each fleet size (5 and 50 sites):

- drain: the stream and its consumer exist, no collector runs, N events are queued in the stream, then
  the collector(s) start; events/s = rows / (last commit - first commit). That is what it sustains.
- live: the collector runs while the sites publish at a fixed total rate; lag = commit time - the
  event's `ts` (set when published, as a site's journal does), p50/p99 from the database.

Everything is on this machine: the publishers, the three nodes, PostgreSQL and the collector share
its cores, so the figures are a floor for a real deployment where they do not.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import ssl
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
from bench.common import proc_cpu_s, write_result  # noqa: E402

TARGET_EVENTS_PER_S = 5000
PASSWORDS = {
    "@PW_BRIDGE_PETCT_NORTH@": "n",
    "@PW_BRIDGE_PETCT_SOUTH@": "s",
    "@PW_FLEET_COLLECTOR@": "fleet-pw",
    "@PW_C_DUTY@": "d",
    "@PW_ADMIN@": "a",
}

# The event mix of examples/scenarios (counted from their journals: alarm traffic dominates).
MIX = [
    ("alarm.raised", 14),
    ("alarm.notify", 16),
    ("alarm.updated", 12),
    ("alarm.acknowledged", 8),
    ("alarm.accepted", 3),
    ("alarm.cleared", 13),
    ("alarm.reset", 4),
    ("occupancy.changed", 8),
    ("dose.administered", 6),
    ("bells.test_pass", 4),
    ("shutdown.step.started", 4),
    ("command.rejected", 2),
    ("config.reloaded", 1),
    ("daemon.started", 1),
    ("dicom.study_complete", 4),
]
TYPES = [t for t, w in MIX for _ in range(w)]


def site_name(i: int) -> str:
    return f"bench-{i:03d}"


def extra_users(n: int) -> str:
    return "".join(
        f'      {{ user: bridge-{site_name(i)}, password: "pw-{i}", allowed_connection_types: ["MQTT"],\n'
        f'        permissions: {{ publish: {{ allow: ["suitemon.{site_name(i)}.>"] }},\n'
        f'                       subscribe: {{ allow: ["suitemon.{site_name(i)}.cmd.>", "$MQTT.sub.>"] }} }} }}\n'
        for i in range(n)
    )


def payload(site: str, seq: int, typ: str) -> str:
    alarm = {
        "alarm_id": "env.temperature.high",
        "occurrence": uuid.uuid4().hex,
        "type": "points.high",
        "priority": random.choice(["high", "medium", "low"]),
        "kind": "technical",
        "latching": False,
        "condition": "present",
        "state": "active",
        "source": "env",
        "location": "hotlab",
        "message": "Hot lab temperature high (29.0 C > 28.0 C)",
        "details": {"value": 29.0, "limit": 28.0},
        "raised_at": "2026-12-03T10:00:00Z",
        "updated_at": "2026-12-03T10:00:00Z",
        "acknowledged_by": None,
        "acknowledged_at": None,
        "closed_at": None,
        "closed_by": None,
        "closed_reason": None,
        "escalation": None,
        "protocol": None,
    }
    data = (
        {"alarm": alarm}
        if typ.startswith("alarm.")
        else {"room": "uptake1", "exam": "fdg-wb", "administered_mbq": 350.0, "checks": []}
    )
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "event_id": uuid.uuid4().hex,
            "seq": seq,
            "ts": ts,
            "site": site,
            "type": typ,
            "actor": "system",
            "alarm_id": alarm["alarm_id"],
            "data": data,
        }
    )


def publisher(
    sites: list[int],
    ports: list[int],
    ca: str,
    per_site: int,
    rate_per_site: float,
    start_seq: int,
    done: mp.Queue,
) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    clients = []
    for k, i in enumerate(sites):
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"load-{site_name(i)}-{os.getpid()}",
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        c.tls_set(ca_certs=ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.username_pw_set(f"bridge-{site_name(i)}", f"pw-{i}")
        c.max_inflight_messages_set(200)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", ports[k % len(ports)])
        c.loop_start()
        clients.append((i, c))
    time.sleep(1.0)
    infos = []
    t0 = time.monotonic()
    for n in range(per_site):
        if rate_per_site:
            wait = t0 + n / rate_per_site - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        for i, c in clients:
            infos.append(
                c.publish(
                    f"suitemon/{site_name(i)}/event",
                    payload(site_name(i), start_seq + n, random.choice(TYPES)),
                    qos=1,
                )
            )
    for info in infos:
        info.wait_for_publish(60)
    for _, c in clients:
        c.disconnect()
        c.loop_stop()
    done.put(len(infos))


def publish(
    n_sites: int, cluster, per_site: int, rate_per_site: float, start_seq: int, procs: int = 2
) -> float:
    ctx = mp.get_context("fork")
    done = ctx.Queue()
    groups = [list(range(n_sites))[k::procs] for k in range(procs)]
    ps = [
        ctx.Process(
            target=publisher,
            args=(g, cluster.mqtt_ports, str(cluster.pki.ca), per_site, rate_per_site, start_seq, done),
        )
        for g in groups
        if g
    ]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    total = sum(done.get(timeout=600) for _ in ps)
    for p in ps:
        p.join(10)
    return total / (time.monotonic() - t0)


def run_size(n_sites: int, drain_events: int, live_rate: float, live_s: float, collectors: int = 1) -> dict:
    import psycopg
    from fleet_helpers import NatsCluster, Postgres
    from helpers import SUITEMON, Proc, dump_toml, wait_until
    from secure_broker import Pki

    d = Path(tempfile.mkdtemp(prefix=f"bench-fleet-{n_sites}-"))
    pki = Pki(d / "pki")
    cluster = NatsCluster(
        d / "nats", pki, PASSWORDS, extra_users=extra_users(n_sites), ack_wait="30s"
    ).start()  # the shipped value: a backlog is not redelivered
    pg = Postgres().start()
    try:
        cluster.wait_mqtt_ready("fleet-collector", "fleet-pw")
        (d / "pw").write_text("fleet-pw")
        fleets = []
        for k in range(collectors):  # all share the one durable consumer
            f = d / f"fleet-{k}.toml"
            f.write_text(
                dump_toml(
                    {
                        "collector": {"id": f"bench{k}"},
                        "mqtt": {
                            "servers": cluster.servers,
                            "username": "fleet-collector",
                            "password_file": str(d / "pw"),
                            "ca_file": str(pki.ca),
                        },
                        "stream": {"servers": cluster.nats_servers},
                        "database": {"dsn": pg.dsn},
                    }
                )
            )
            fleets.append(f)

        def start():
            return [
                Proc(
                    [*SUITEMON, "fleet", "run", "-c", str(f), "--log-format", "json"],
                    d / f"collector-{k}.log",
                )
                for k, f in enumerate(fleets)
            ]

        def stop(cols):
            for c in cols:
                c.terminate()

        def count():
            with psycopg.connect(pg.dsn) as c:
                return c.execute("SELECT count(*) FROM fleet_event").fetchone()[0]

        cols = start()  # creates the stream and its consumer, then stops: the drain phase queues into them
        wait_until(
            lambda: all("reading the stream" in c.log_text() for c in cols),
            30,
            what="collectors connected",
        )
        time.sleep(1.0)
        stop(cols)
        per_site = max(1, drain_events // n_sites)
        pub_rate = publish(n_sites, cluster, per_site, 0, 1)
        queued = per_site * n_sites
        nats_cpu0 = sum(proc_cpu_s(p.pid) for p in cluster.procs)
        t_drain = time.monotonic()
        cols = start()
        wait_until(lambda: count() >= queued, 600, interval=0.5, what="drain")
        drain_wall = time.monotonic() - t_drain
        cpu = {
            "collector_cpu_s": round(sum(proc_cpu_s(c.pid) for c in cols), 2),
            "nats_cpu_s": round(sum(proc_cpu_s(p.pid) for p in cluster.procs) - nats_cpu0, 2),
            "drain_wall_s": round(drain_wall, 2),
        }
        with psycopg.connect(pg.dsn) as c:
            (span,) = c.execute(
                "SELECT extract(epoch FROM max(received_at) - min(received_at)) FROM fleet_event"
            ).fetchone()
        drain_rate = queued / max(float(span), 1e-3)

        # live: a steady total rate, lag from the event's ts to its commit
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            c.execute("TRUNCATE fleet_event")
        n_live = int(live_rate * live_s / n_sites)
        publish(n_sites, cluster, n_live, live_rate / n_sites, 1_000_000)
        wait_until(lambda: count() >= n_live * n_sites, 120, interval=0.5, what="live events stored")
        with psycopg.connect(pg.dsn) as c:
            p50, p99, mx = c.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x), percentile_cont(0.99) WITHIN GROUP "
                "(ORDER BY x), max(x) FROM (SELECT extract(epoch FROM received_at - ts) AS x FROM fleet_event) t"
            ).fetchone()
        stop(cols)
        return {
            "sites": n_sites,
            "collectors": collectors,
            "drain_events": queued,
            "publish_rate_per_s": round(pub_rate),
            "stored_per_s": round(drain_rate),
            **cpu,
            "live_rate_per_s": live_rate,
            "live_events": n_live * n_sites,
            "lag_p50_ms": round(float(p50) * 1000, 1),
            "lag_p99_ms": round(float(p99) * 1000, 1),
            "lag_max_ms": round(float(mx) * 1000, 1),
        }
    finally:
        cluster.stop()
        pg.close()
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--sites", type=int, action="append")
    ap.add_argument("--drain-events", type=int, default=20000)
    ap.add_argument(
        "--live-rate", type=float, default=250.0, help="events/s over all sites in the live phase"
    )
    ap.add_argument("--live-s", type=float, default=10.0)
    ap.add_argument("--collectors", type=int, action="append", help="collector processes (default: 1)")
    a = ap.parse_args()
    runs = [
        run_size(n, a.drain_events, a.live_rate, a.live_s, k)
        for n in (a.sites or [5, 50])
        for k in (a.collectors or [1])
    ]
    best = max(r["stored_per_s"] for r in runs)
    summary = (
        "; ".join(
            f"{r['sites']} sites, {r['collectors']} collector(s): {r['stored_per_s']} events/s stored "
            f"(drain of {r['drain_events']}), "
            f"lag p50 {r['lag_p50_ms']} / p99 {r['lag_p99_ms']} ms at {r['live_rate_per_s']:.0f}/s"
            for r in runs
        )
        + f"; target >= {TARGET_EVENTS_PER_S}/s"
    )
    # The machine is shared: its load during the run says how much of the 2 cores we had.
    summary += f"; load average during the run {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    write_result(
        a.out,
        "fleet_ingest",
        {
            "runs": runs,
            "summary": summary,
            "loadavg_1min": os.getloadavg()[0],
            "meets_target": best >= TARGET_EVENTS_PER_S,
        },
    )


if __name__ == "__main__":
    main()
