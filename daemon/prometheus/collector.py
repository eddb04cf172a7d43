"""Turns a Snapshot into Prometheus metric families (names and labels: docs/metrics in README)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from suitemon.daemon.prometheus.snapshot import Snapshot

DICOM_ASSOCIATIONS = {"accepted": "dicom.associations.accepted", "rejected": "dicom.associations.rejected"}
DICOM_INSTANCES = {
    "received": "dicom.instances.received",
    "parsed": "dicom.instances.parsed",
    "unparseable": "dicom.instances.unparseable",
    "store_failed": "dicom.store.failed",
}


def families(s: Snapshot) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "suitemon_info", "suitemon build and site (always 1)", labels=["version", "site"]
    )
    info.add_metric([s.version, s.site], 1)
    yield info

    age = GaugeMetricFamily(
        "suitemon_device_age_seconds",
        "seconds since the device's last complete reading (since start if none yet)",
        labels=["device", "kind"],
    )
    polls = CounterMetricFamily(
        "suitemon_device_polls", "polls attempted since the device's runner started", labels=["device"]
    )
    failures = CounterMetricFamily(
        "suitemon_device_poll_failures", "failed polls since the daemon started", labels=["device"]
    )
    lost = GaugeMetricFamily(
        "suitemon_device_comm_lost", "1 while the device's comm-lost alarm condition holds", labels=["device"]
    )
    for did, d in sorted(s.devices.items()):
        age.add_metric([did, d.kind], round(d.age_s, 3))
        polls.add_metric([did], d.polls)
        failures.add_metric([did], d.failures)
        lost.add_metric([did], 1 if d.comm_lost else 0)
    yield from (age, polls, failures, lost)

    alarms = GaugeMetricFamily(
        "suitemon_alarms_open", "open alarms by priority and state", labels=["priority", "state"]
    )
    for (prio, state), n in sorted(s.alarms.items()):
        alarms.add_metric([prio, state], n)
    yield alarms

    yield GaugeMetricFamily(
        "suitemon_outbox_backlog", "journaled events not yet acknowledged by the broker", value=s.backlog
    )
    yield GaugeMetricFamily(
        "suitemon_journal_events", "events in the journal (last sequence number)", value=s.journal_events
    )
    yield GaugeMetricFamily(
        "suitemon_journal_bytes", "journal size on disk (database and write-ahead log)", value=s.journal_bytes
    )
    yield GaugeMetricFamily(
        "suitemon_journal_fault",
        "1 while the journal cannot be written (disk full, I/O error)",
        value=1 if s.journal_fault else 0,
    )

    if s.dicom:
        assoc = CounterMetricFamily(
            "suitemon_dicom_associations", "DICOM associations by result", labels=["result"]
        )
        for label, key in DICOM_ASSOCIATIONS.items():
            assoc.add_metric([label], s.counters.get(key, 0))
        inst = CounterMetricFamily(
            "suitemon_dicom_instances", "DICOM instances by outcome", labels=["outcome"]
        )
        for label, key in DICOM_INSTANCES.items():
            inst.add_metric([label], s.counters.get(key, 0))
        yield from (assoc, inst)

    # Every internal counter as well (commands rejected, frames garbled, ...): nothing hidden.
    raw = CounterMetricFamily(
        "suitemon_internal", "the daemon's internal counters by name", labels=["counter"]
    )
    for name, n in s.counters.items():
        raw.add_metric([name], n)
    yield raw


class SuiteCollector:
    """A custom collector: reads the daemon's state at scrape time, through ``read`` (on the loop).

    ``read`` may fail (the loop is stuck past the timeout): the scrape then says so with
    ``suitemon_loop_responsive 0`` instead of numbers that would be stale.
    """

    def __init__(self, read: Callable[[], Snapshot]):
        self.read = read

    def describe(self):
        return []  # registering must not call collect(): that would wait on the loop it runs on

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self.read()
        except Exception:
            yield GaugeMetricFamily(
                "suitemon_loop_responsive", "1 when the daemon's loop answered the scrape", value=0
            )
            return
        yield GaugeMetricFamily(
            "suitemon_loop_responsive", "1 when the daemon's loop answered the scrape", value=1
        )
        yield from families(snap)
