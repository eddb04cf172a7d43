"""The test plumbing that keeps the suite's wall time from growing (docs/testing.md "Suite time")."""

from __future__ import annotations

import json
import uuid

import helpers
from conftest import pytest_collection_modifyitems
from helpers import Watcher


def test_watcher_events_parses_each_message_once_and_keeps_every_event(broker, monkeypatch):
    site = "t" + uuid.uuid4().hex[:10]
    w = Watcher(broker.port)
    try:
        w.wait_for(lambda w: w.client.is_connected(), 10, what="watcher connected")
        topic = f"suitemon/{site}/event"
        for seq in range(1, 201):
            w.publish(topic, {"seq": seq})
        w.publish(f"suitemon/{site}/status", {"state": "online"})  # not an event: never in the list
        w.wait_for(lambda w: len(w.events(site)) == 200, 10, what="200 events")

        parsed = []
        real_loads = json.loads

        def counting_loads(payload, *a, **kw):
            parsed.append(payload)
            return real_loads(payload, *a, **kw)

        monkeypatch.setattr(helpers.json, "loads", counting_loads)
        first = w.events(site)
        again = w.events(site)
        assert [e["seq"] for e in first] == list(range(1, 201))
        assert again == first and again is not first  # a new list each time: the caller may edit it
        assert parsed == []  # the wait above parsed them; asking again parses nothing

        w.publish(topic, {"seq": 201})
        w.wait_for(lambda w: len(w.events(site)) == 201, 10, what="event 201")
        assert len(parsed) == 1  # only the new message
        first.clear()
        assert [e["seq"] for e in w.events(site)] == list(range(1, 202))
    finally:
        w.close()


class _Item:
    """What the ordering hook reads of a collected test: its node id and markers."""

    def __init__(self, nodeid: str, *marks: str):
        self.nodeid = nodeid
        self.marks = set(marks)

    def get_closest_marker(self, name: str):
        return name if name in self.marks else None


def test_soak_then_slow_modules_run_first_the_rest_largest_first_each_module_together():
    items = [
        _Item("tests/test_a.py::test_1"),
        _Item("tests/test_b.py::test_1"),
        _Item("tests/test_b.py::test_2", "slow"),
        _Item("tests/test_b.py::test_3"),
        _Item("tests/test_c.py::test_1"),
        _Item("tests/test_c.py::test_2"),
        _Item("tests/test_d.py::test_1", "soak"),
        _Item("tests/test_e.py::test_1", "slow"),
    ]
    pytest_collection_modifyitems(None, items)
    assert [i.nodeid for i in items] == [
        "tests/test_d.py::test_1",
        "tests/test_b.py::test_1",
        "tests/test_b.py::test_2",
        "tests/test_b.py::test_3",
        "tests/test_e.py::test_1",
        "tests/test_c.py::test_1",
        "tests/test_c.py::test_2",
        "tests/test_a.py::test_1",
    ]
