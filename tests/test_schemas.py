"""The JSON Schemas themselves are valid and every schema names the topic it covers."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator
from schema_check import SCHEMAS, problems, schema_for


def test_every_schema_is_valid_and_has_a_topic():
    files = sorted(SCHEMAS.glob("*.schema.json"))
    assert len(files) >= 6
    for p in files:
        s = json.loads(p.read_text())
        Draft202012Validator.check_schema(s)
        assert s.get("x-topic"), p.name


def test_topics_map_to_schemas_and_bad_payloads_are_caught():
    assert schema_for("alarm/bells.uptake3.call")[1] == "suitemon/alarm"
    assert schema_for("device/ups/state")[1] == "suitemon/device_state"
    bad = [("suitemon/x/status", b'{"state": "sleeping"}'), ("suitemon/x/nowhere/special", b"{}")]
    found = problems(bad)
    assert any("'sleeping' is not one of" in f for f in found)
    assert found[-1].startswith("suitemon/x/nowhere/special: no schema")
