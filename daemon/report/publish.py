"""Publish a report's headline figures, retained, on ``<base>/<site>/report/summary``.

The report runs as a batch job (systemd timer), not inside the daemon, so it connects once with
the config's broker account, publishes with QoS 1, waits for the broker's PUBACK and leaves.
It is a current value like ``status`` (the newest report's figures), not a journal event: the
evidence is the report file and the journal head it names.
"""

from __future__ import annotations

import json
import ssl
import uuid
from datetime import UTC, datetime

from suitemon.daemon.contract import Topics
from suitemon.daemon.mqtt import connect, make_client
from suitemon.daemon.report.build import Report

SUMMARY_VERSION = 1


class PublishFailed(OSError):
    pass


def summary_payload(report: Report) -> dict:
    s = report.summary()
    return {
        "v": SUMMARY_VERSION,
        "site": report.site_id,
        "from": s["from"],
        "to": s["to"],
        "timezone": report.period.tz.key,
        "generated_at": datetime.fromtimestamp(report.generated_at, UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "events": report.events_in_period,
        "figures": s["figures"],
        "journal": s["journal"],
    }


def topic(cfg) -> str:
    return Topics(cfg.mqtt.base_topic, cfg.site.id).sub("report", "summary")


def publish_summary(cfg, report: Report, timeout: float = 10.0) -> str:
    m = cfg.mqtt
    # The one client factory (daemon/mqtt.py): TLS and hostname settings as configured.
    client = make_client(m, f"suitemon-report-{uuid.uuid4().hex[:8]}", daemon_credentials=True)
    t = topic(cfg)
    try:
        connect(client, m, keepalive=10, blocking=True)
    except (OSError, ssl.SSLError) as err:
        raise PublishFailed(f"cannot reach the broker {m.host}:{m.port}: {err}") from None
    client.loop_start()
    try:
        info = client.publish(t, json.dumps(summary_payload(report), ensure_ascii=False), qos=1, retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise PublishFailed(
                f"the broker {m.host}:{m.port} did not confirm the summary within {timeout:g} s"
            )
    except RuntimeError as err:  # paho: the connection was refused or lost before the publish
        raise PublishFailed(f"publishing to {m.host}:{m.port} failed: {err}") from None
    finally:
        client.disconnect()
        client.loop_stop()
    return t
