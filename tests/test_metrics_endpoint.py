"""The Prometheus endpoint, scraped over HTTP from a real daemon while simulators and a scenario run."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request

import pytest
from dicom_helpers import dicom_section, target
from helpers import free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families
from service_helpers import points_device

from suitemon.daemon import __version__
from suitemon.daemon.config import ConfigError, parse_config
from suitemon.simulators import dicom_study as st
from suitemon.simulators.scanner import SendError, echo, send

SCENARIO = """
name = "metrics-scrape"
duration_s = 3

[[step]]
at = 0.3
sim = "env"
action = "drift"
args = { on = false }

[[step]]
at = 0.5
sim = "env"
action = "set"
args = { temperature = 29.0 }
note = "hot lab too warm: a low-priority limit alarm"

[[expect]]
by = 2.5
alarm = "env.temperature.high"
fields = { state = "active", priority = "low" }
"""


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        text = r.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def metrics_port(suite) -> int:
    return suite.data["metrics"]["port"]


def test_scrape_while_a_scenario_runs_shows_devices_alarms_outbox_and_journal(make_suite, watcher, tmp_path):
    silent = points_device()  # no simulator answers it: failures, growing age, comm lost
    suite = make_suite({"env": points_device(), "env2": silent}, extra={"metrics": {"port": free_port()}})
    suite.start_sims("env")
    suite.start_daemon(watcher)
    port = metrics_port(suite)
    first = scrape(port)
    scenario = tmp_path / "metrics.toml"
    scenario.write_text(SCENARIO)
    result: dict = {}
    player = threading.Thread(target=lambda: result.setdefault("fails", suite.play(scenario, watcher)))
    player.start()
    try:

        def alarm_seen():
            s = scrape(port)
            return s if value(s, "suitemon_alarms_open", priority="low", state="active") == 1 else None

        during = wait_until(alarm_seen, 10, interval=0.2, what="the scenario's alarm in a scrape")
        assert player.is_alive(), "the scrape must be taken while the scenario runs"
    finally:
        player.join(30)
    assert result["fails"] == []

    assert value(during, "suitemon_loop_responsive") == 1
    assert value(during, "suitemon_info", version=__version__, site=suite.site) == 1
    assert value(during, "suitemon_device_age_seconds", device="env", kind="modbus_points") < 2.0
    assert value(during, "suitemon_device_polls_total", device="env") > value(
        first, "suitemon_device_polls_total", device="env"
    )
    assert value(during, "suitemon_device_poll_failures_total", device="env") == 0
    assert value(during, "suitemon_device_comm_lost", device="env") == 0
    assert value(during, "suitemon_device_poll_failures_total", device="env2") >= 3
    assert value(during, "suitemon_device_comm_lost", device="env2") == 1
    assert value(during, "suitemon_device_age_seconds", device="env2", kind="modbus_points") > 0.5
    # env2's comm-lost alarm is high and technical; every (priority, state) pair has a series.
    assert value(during, "suitemon_alarms_open", priority="high", state="active") >= 1
    assert value(during, "suitemon_alarms_open", priority="medium", state="acknowledged") == 0
    assert value(during, "suitemon_outbox_backlog") is not None
    assert value(during, "suitemon_journal_events") > value(first, "suitemon_journal_events") > 0
    assert value(during, "suitemon_journal_bytes") > 0
    assert value(during, "suitemon_journal_fault") == 0
    assert value(during, "suitemon_internal_total", counter="device.env2.poll_failures") >= 3
    assert value(during, "process_resident_memory_bytes") > 0
    assert value(during, "suitemon_dicom_instances_total", outcome="received") is None  # no [dicom]


def test_dicom_associations_and_instances_are_counted(make_suite, watcher):
    suite = make_suite(extra={**dicom_section(), "metrics": {"port": free_port()}})
    suite.start_daemon(watcher)
    port = metrics_port(suite)
    before = scrape(port)
    assert value(before, "suitemon_dicom_instances_total", outcome="received") == 0
    spec = st.StudySpec(ct_rows=32, ct_cols=32, pet_rows=16, pet_cols=16, ct_slices=2, pet_slices=2)
    study = list(st.build_study(spec))
    result = send(study, **target(suite))
    assert result.ok == len(study)
    with pytest.raises(SendError):
        echo(**{**target(suite), "calling_ae": "ROGUE"})

    def counted():
        s = scrape(port)
        return (
            s
            if (
                value(s, "suitemon_dicom_instances_total", outcome="parsed") == len(study)
                and value(s, "suitemon_dicom_associations_total", result="rejected") == 1
            )
            else None
        )

    after = wait_until(counted, 20, interval=0.2, what="instances parsed and the rejection counted")
    assert value(after, "suitemon_dicom_instances_total", outcome="received") == len(study)
    assert value(after, "suitemon_dicom_instances_total", outcome="unparseable") == 0
    assert value(after, "suitemon_dicom_associations_total", result="accepted") == 1


def test_a_taken_port_is_an_error_but_the_daemon_keeps_monitoring(make_suite, watcher):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        suite = make_suite({"env": points_device()}, extra={"metrics": {"port": port}})
        suite.start_sims("env")
        d = suite.start_daemon(watcher)
        wait_until(lambda: "metrics endpoint cannot listen" in d.log_text(), 10, what="bind error logged")
        rid = "metrics-port"
        watcher.publish(suite.topic("cmd", "eng", "status"), {"request_id": rid})
        reply = watcher.wait_for(
            lambda w: next(
                (
                    r
                    for t, p, *_ in w.messages
                    if t == suite.topic("reply", "eng") and (r := json.loads(p)).get("request_id") == rid
                ),
                None,
            ),
            10,
            what="status reply",
        )["result"]
        assert reply["counters"].get("metrics.bind_failed") == 1
        watcher.wait_for(
            lambda w: (s := w.json_of(suite.topic("device", "env", "state"))) and not s["stale"],
            10,
            what="env still monitored",
        )
        assert d.alive()


def test_metrics_section_defaults_and_errors():
    base = {"site": {"id": "s", "name": "S"}}
    assert parse_config(base).metrics is None  # off unless configured
    cfg = parse_config({**base, "metrics": {}})
    assert (cfg.metrics.bind, cfg.metrics.port) == ("127.0.0.1", 9480)
    with pytest.raises(ConfigError) as e:
        parse_config({**base, "metrics": {"port": 70000, "bnd": "0.0.0.0"}})
    assert {i.path for i in e.value.issues} == {"metrics.port", "metrics.bnd"}
