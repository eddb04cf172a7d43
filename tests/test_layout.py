"""The installed layout is one import name: nothing in the project imports a bare top-level
``daemon``, ``drivers`` or ``simulators`` (python-daemon and other projects own those names), and no
module in a feature package repeats its folder's name as a prefix."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

TOPS = {"daemon", "drivers", "simulators"}
SOURCES = [p for top in ("daemon", "drivers", "simulators", "tests", "bench") for p in (REPO / top).rglob("*.py")]


def test_no_module_imports_a_bare_top_level_folder():
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} relative import")
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in TOPS]
    assert SOURCES and not offenders, offenders


def test_feature_modules_do_not_repeat_their_folder_name():
    repeats = [str(p.relative_to(REPO)) for p in (REPO / "daemon").rglob("*.py")
               if p.parent != REPO / "daemon" and p.stem.startswith(p.parent.name.rstrip("s") + "_")]
    flat_prefixed = [p.name for p in (REPO / "daemon").glob("*.py")
                     if p.stem.split("_")[0] in {d.name.rstrip("s") for d in (REPO / "daemon").iterdir() if d.is_dir()}
                     | {d.name for d in (REPO / "daemon").iterdir() if d.is_dir()}]
    assert not repeats and not flat_prefixed, (repeats, flat_prefixed)
