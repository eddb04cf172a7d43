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
from datetime import datetime, timezone

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from suitemon.daemon.contract import Topics
from suitemon.daemon.report.build import Report

SUMMARY_VERSION = 1


class PublishFailed(OSError):
    pass


def summary_payload(report: Report) -> dict:
    s = report.summary()
    return {"v": SUMMARY_VERSION, "site": report.site_id, "from": s["from"], "to": s["to"],
            "timezone": report.period.tz.key,
            "generated_at": datetime.fromtimestamp(report.generated_at, timezone.utc)
            .isoformat(timespec="seconds").replace("+00:00", "Z"),
            "events": report.events_in_period, "figures": s["figures"], "journal": s["journal"]}


def topic(cfg) -> str:
    return Topics(cfg.mqtt.base_topic, cfg.site.id).sub("report", "summary")


def publish_summary(cfg, report: Report, timeout: float = 10.0) -> str:
    m = cfg.mqtt
    v5 = m.protocol == "5"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"suitemon-report-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311, clean_session=None if v5 else True)
    if m.username:
        client.username_pw_set(m.username, m.password_file.read_text().strip() if m.password_file else None)
    if m.tls is not None:
        client.tls_set(ca_certs=str(m.tls.ca_file), certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                       keyfile=str(m.tls.key_file) if m.tls.key_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if m.tls.insecure_skip_hostname:
            client.tls_insecure_set(True)
    t = topic(cfg)
    try:
        client.connect(m.host, m.port, keepalive=10)
    except (OSError, ssl.SSLError) as err:
        raise PublishFailed(f"cannot reach the broker {m.host}:{m.port}: {err}") from None
    client.loop_start()
    try:
        info = client.publish(t, json.dumps(summary_payload(report), ensure_ascii=False), qos=1, retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise PublishFailed(f"the broker {m.host}:{m.port} did not confirm the summary within {timeout:g} s")
    except RuntimeError as err:  # paho: the connection was refused or lost before the publish
        raise PublishFailed(f"publishing to {m.host}:{m.port} failed: {err}") from None
    finally:
        client.disconnect()
        client.loop_stop()
    return t
