"""Validate published payloads against daemon/schemas/*.schema.json, matched by their x-topic."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent.parent / "daemon" / "schemas"


@lru_cache(maxsize=1)
def _load():
    schemas = [json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.schema.json"))]
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    return [
        (
            s["x-topic"].split("/"),
            Draft202012Validator(s, registry=registry),
            s["$id"],
            s.get("x-direction", "out"),
        )
        for s in schemas
    ]


def _match(pattern: list[str], parts: list[str]) -> bool:
    if pattern and pattern[-1] == "#":
        return parts[: len(pattern) - 1] == pattern[:-1] or all(
            p in ("+", q) for p, q in zip(pattern[:-1], parts, strict=False)
        )
    return len(pattern) == len(parts) and all(p in ("+", q) for p, q in zip(pattern, parts, strict=True))


def schema_for(rel_topic: str):
    parts = rel_topic.split("/")
    for pattern, validator, sid, direction in _load():
        if _match(pattern, parts):
            return (validator if direction == "out" else None), sid
    return None, None


def problems(messages, root_prefix: str = "suitemon/") -> list[str]:
    """Every schema violation, and every topic no schema covers, in a list of (topic, payload, ...)."""
    out = []
    for topic, payload, *_ in messages:
        if not topic.startswith(root_prefix) or not payload:
            continue  # empty retained payloads clear a topic
        rel = topic.split("/", 2)[2] if topic.count("/") >= 2 else ""
        if rel.startswith("cmd/"):
            continue  # inputs: the daemon validates commands itself (tests send bad ones on purpose)
        validator, sid = schema_for(rel)
        if validator is None:
            if sid is None:
                out.append(
                    f"{topic}: no schema in daemon/schemas has an x-topic matching '{rel}' "
                    "(for a topic the daemon reads, give its schema \"x-direction\": \"in\")"
                )
            continue
        try:
            doc = json.loads(payload)
        except json.JSONDecodeError as err:
            out.append(f"{topic}: not JSON: {err}")
            continue
        for e in validator.iter_errors(doc):
            out.append(f"{topic} ({sid}): {'/'.join(map(str, e.absolute_path))}: {e.message}")
    return out
