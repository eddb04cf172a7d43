"""Alarm events journaled and published per second, against raw paho QoS 1 publishing as the yardstick.

suitemon: the real AlarmEngine -> Recorder (group commit, synchronous=FULL) -> Outbox -> paho -> Mosquitto,
counting an event done when its PUBACKs are in (the delivery cursor reaches it).
Yardstick: the same number of messages of the same size published by plain paho with QoS 1 and no
journal, done when every PUBACK is in. The ratio shows what durability costs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import Broker, write_result
from suitemon.daemon import logs
from suitemon.daemon.alarms import AlarmEngine, Condition
from suitemon.daemon.config import parse_config
from suitemon.daemon.contract import Topics, messages_for
from suitemon.daemon.events import Recorder
from suitemon.daemon.journal import open_journal
from suitemon.daemon.mqtt import MqttLink
from suitemon.daemon.outbox import Outbox
from suitemon.daemon.threads import LoopBridge


async def suitemon_run(port: int, n: int, synchronous: str, burst: int) -> dict:
    cfg = parse_config({"site": {"id": "bench", "name": "b"}, "mqtt": {"port": port, "max_inflight": 1000}})
    tmp = tempfile.TemporaryDirectory()
    journal = open_journal(tmp.name, synchronous)
    topics = Topics("suitemon", "bench")
    outbox = Outbox(journal, topics, "bench", window=1000)
    recorder = Recorder(journal, on_commit=outbox.wake)
    outbox.request_flush = recorder.touch
    engine = AlarmEngine(recorder, cfg)
    connected = asyncio.Event()
    link = MqttLink(
        cfg.mqtt,
        client_id="bench-suitemon",
        will=None,
        bridge=LoopBridge(),
        on_connect=lambda: (connected.set(), outbox.wake()),
        on_ack=outbox.on_ack,
    )
    outbox.link = link
    link.start()
    await asyncio.wait_for(connected.wait(), 10)
    sample = None
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for i in range(n):
        c = Condition(
            alarm_id=f"bench.a{i % 500}",
            type="bench.storm",
            present=(i // 500) % 2 == 0,
            priority="high",
            kind="technical",
            source="bench",
            message=f"storm alarm {i}",
        )
        ev = engine.apply(c)
        if sample is None and ev is not None:
            sample = ev
        if i % burst == burst - 1:
            await asyncio.sleep(0)  # let the group commit and the outbox run, as the daemon's loop would
    recorder.flush()
    last = journal.last_seq
    while outbox.delivered < last:  # noqa: ASYNC110 (the outbox signals no "delivered up to N"; 1 ms is the bench resolution)
        await asyncio.sleep(0.001)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    msg_bytes = sum(len(m.payload) for m in messages_for(sample, topics, "bench"))
    link.stop()
    journal.close()
    tmp.cleanup()
    return {
        "events": last,
        "seconds": round(wall, 3),
        "events_per_s": round(last / wall, 1),
        "cpu_s": round(cpu, 3),
        "bytes_per_event": msg_bytes,
        "msgs_per_event": 2,
    }


def paho_run(port: int, n: int, payload_bytes: int) -> dict:
    done = threading.Event()
    acked = [0]

    def on_publish(c, u, mid, rc=None, p=None):
        acked[0] += 1
        if acked[0] == n:
            done.set()

    conn = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.on_publish = on_publish
    c.on_connect = lambda *a: conn.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    conn.wait(10)
    payload = b"x" * payload_bytes
    t0 = time.perf_counter()
    for _i in range(n):
        c.publish("bench/raw", payload, qos=1)
    done.wait(120)
    wall = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return {"messages": n, "seconds": round(wall, 3), "messages_per_s": round(n / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--burst", type=int, default=50, help="events raised per loop iteration (an alarm storm)")
    ap.add_argument("--out")
    a = ap.parse_args()
    logs.setup("warning", "json")
    with Broker() as b:
        full = asyncio.run(suitemon_run(b.port, a.events, "full", a.burst))
        normal = asyncio.run(suitemon_run(b.port, a.events, "normal", a.burst))
        # Yardstick: the same bytes on the wire (2 messages per event) with no journal.
        raw = paho_run(b.port, a.events * 2, full["bytes_per_event"] // 2)
    raw_events_per_s = raw["messages_per_s"] / 2
    write_result(
        a.out,
        "journal_publish",
        {
            "what": "alarm events journaled (hash chain, WAL) and published with QoS 1 until PUBACK",
            "suitemon_sync_full": full,
            "suitemon_sync_normal": normal,
            "yardstick_raw_paho_qos1": {**raw, "equivalent_events_per_s": round(raw_events_per_s, 1)},
            "ratio_full_vs_raw": round(full["events_per_s"] / raw_events_per_s, 3),
            "target_events_per_s": 1000,
            "meets_target": full["events_per_s"] >= 1000,
        },
    )


if __name__ == "__main__":
    main()
