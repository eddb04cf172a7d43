"""Every test the hazard log and the reliability table name exists (they must not point at nothing)."""

from __future__ import annotations

import re

import pytest
from helpers import REPO

DOCS = ["docs/hazards.md", "docs/reliability.md"]
REF = re.compile(r"`(tests/[\w/]+\.py)(?:::([\w]+))?")


def references():
    for doc in DOCS:
        for m in REF.finditer((REPO / doc).read_text()):
            yield doc, m.group(1), m.group(2) or ""


@pytest.mark.parametrize("doc,path,name", sorted(set(references())))
def test_named_test_exists(doc, path, name):
    f = REPO / path
    assert f.exists(), f"{doc} names {path}, which does not exist"
    if name:
        assert re.search(rf"^\s*def {re.escape(name)}\(", f.read_text(), re.M), f"{doc} names {path}::{name}"


def test_every_hazard_names_a_test():
    rows = [
        line
        for line in (REPO / "docs/hazards.md").read_text().splitlines()
        if re.match(r"\| H\d+(\.\d+)? ", line)
    ]
    assert len(rows) >= 9
    for row in rows:
        assert "tests/" in row or "bench/" in row, row
