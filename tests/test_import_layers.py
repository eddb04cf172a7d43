"""The import layers hold: the import-linter contracts in pyproject.toml, run as CI runs them.

import-linter and grimp come with the `lint` extra (.ci/run installs it). Without them these
tests skip on a developer's machine, and fail in CI (CI=true), where a skip would hide a broken layer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import REPO


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[lint]')")


def _contracts() -> dict[str, dict]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in cfg["contracts"]}


def test_the_import_contracts_hold():
    _need("importlinter")
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_daemon_module_is_named_core_or_feature():
    # A new module of suitemon.daemon must be placed in a layer, or the core contract would not see it.
    contracts = _contracts()
    core = {m.rsplit(".", 1)[1] for m in contracts["core"]["source_modules"]}
    features = {m.rsplit(".", 1)[1] for m in contracts["core"]["forbidden_modules"]}
    assert set(contracts["simulators"]["forbidden_modules"]) == set(contracts["core"]["forbidden_modules"])
    daemon = REPO / "daemon"
    on_disk = {p.stem for p in daemon.glob("*.py") if p.stem != "__init__"}
    on_disk |= {p.parent.name for p in daemon.glob("*/__init__.py")}
    assert not core & features
    assert on_disk == core | features, {
        "unplaced": sorted(on_disk - core - features),
        "gone": sorted((core | features) - on_disk),
    }


def _cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(imports.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    scc.append(m)
                    if m == node:
                        break
                if len(scc) > 1:
                    found.append(sorted(scc))
    return found


def test_no_module_imports_itself_through_others():
    # Finer than the package contract: module to module, across daemon, drivers and simulators
    # (the known package-level edges from simulators into the daemon included).
    grimp = _need("grimp")
    graph = grimp.build_graph("suitemon", cache_dir=None)
    imports = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(imports) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
