"""The feature table (daemon/kinds.py): one frozen row per kind/feature, every reference loadable,
and no name given twice (a second registration used to shadow the first without a word)."""

from __future__ import annotations

import dataclasses

import pytest

from suitemon.daemon import kinds
from suitemon.daemon.contract import Topics, messages_for
from suitemon.daemon.journal import Event
from suitemon.daemon.kinds import Feature, FeatureError


def test_a_name_given_twice_is_refused():
    with pytest.raises(FeatureError, match="'board' is defined twice"):
        kinds.index((Feature("board", section="m:A"), Feature("radiation"), Feature("board", cli="m:b")))


def test_rows_are_frozen_and_the_table_read_only():
    row = kinds.FEATURES["dicom"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.service = "x:y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        kinds.FEATURES["extra"] = Feature("extra")  # type: ignore[index]


@pytest.mark.parametrize(
    "row, message",
    [
        (dict(device_config="m:C", driver="m:D"), "needs device_config, driver and rules"),
        (dict(device_config="m:C", driver="m:D", rules="m:R", section="m:S"), "names no section"),
        (dict(simulator="m:S"), "use sim_factory"),
        (dict(service="m:f", service_needs_section=True), "needs a service and a section"),
        (dict(routes="m:r"), "tuple of refs"),
    ],
)
def test_a_malformed_row_is_refused(row, message):
    with pytest.raises(FeatureError, match=message):
        Feature("x", **row)


def test_every_reference_in_the_table_loads():
    refs = [
        (row.name, f.name, ref)
        for row in kinds.FEATURES.values()
        for f in dataclasses.fields(row)
        if f.name not in ("name", "service_needs_section")
        for ref in ((getattr(row, f.name),) if f.name != "routes" else row.routes)
        if ref
    ]
    failures = []
    for name, field, ref in refs:
        try:
            kinds.load(ref)
        except kinds.KindLoadError as err:
            failures.append(f"{name}.{field}: {err}")
    assert len(refs) > 30 and not failures, failures


def test_the_core_reads_the_table():
    assert set(kinds.names()) >= {"modbus_points", "ups_apc", "dispenser", "ludlum375", "callbell_io"}
    assert set(kinds.sections()) >= {
        "board",
        "radiation",
        "dispensing",
        "uptake",
        "dicom",
        "shutdown",
        "metrics",
    }
    assert {f.name for f in kinds.with_field("service_needs_section")} >= {"dicom", "shutdown", "metrics"}
    assert {f.name for f in kinds.with_field("sim_factory")} == {"scanner", "shutdown_targets", "paging_base"}


def test_feature_routes_reach_the_broker_without_importing_the_service():
    # Routes used to register as a side effect of importing the feature's service module.
    event = Event(
        seq=1,
        event_id="e1",
        ts="2026-01-01T00:00:00Z",
        type="dicom.dose_summary",
        alarm_id=None,
        actor="dicom",
        data={"study": "s1"},
    )
    topics = Topics("suitemon", "site")
    sent = [m.topic for m in messages_for(event, topics, "site")]
    assert sent[0] == topics.sub("dose", "study"), sent


def test_a_device_reference_that_is_not_the_right_class_is_refused(monkeypatch):
    """A row naming the wrong object (a function, another class) fails at load with what it named,
    not later as an odd AttributeError inside a runner."""
    wrong = Feature("wrong", device_config="suitemon.daemon.kinds:names", driver="builtins:dict", rules="m:R")
    monkeypatch.setattr(kinds, "KINDS", {"wrong": wrong})
    with pytest.raises(kinds.KindLoadError, match="not a DeviceConfig subclass"):
        kinds.config_model("wrong")
    with pytest.raises(kinds.KindLoadError, match="not a Driver subclass"):
        kinds.driver_class("wrong")
