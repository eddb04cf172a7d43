"""The installed layout is one import name: nothing in the project imports a bare top-level
``daemon``, ``drivers`` or ``simulators`` (python-daemon and other projects own those names), and no
module in a feature package repeats its folder's name as a prefix."""

from __future__ import annotations

import ast

from helpers import REPO

TOPS = {"daemon", "drivers", "simulators"}
SOURCES = [
    p for top in ("daemon", "drivers", "simulators", "tests", "bench") for p in (REPO / top).rglob("*.py")
]


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
            offenders += [
                f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in TOPS
            ]
    assert SOURCES and not offenders, offenders


def test_feature_modules_do_not_repeat_their_folder_name():
    repeats = [
        str(p.relative_to(REPO))
        for p in (REPO / "daemon").rglob("*.py")
        if p.parent != REPO / "daemon" and p.stem.startswith(p.parent.name.rstrip("s") + "_")
    ]
    flat_prefixed = [
        p.name
        for p in (REPO / "daemon").glob("*.py")
        if p.stem.split("_")[0]
        in {d.name.rstrip("s") for d in (REPO / "daemon").iterdir() if d.is_dir()}
        | {d.name for d in (REPO / "daemon").iterdir() if d.is_dir()}
    ]
    assert not repeats and not flat_prefixed, (repeats, flat_prefixed)


PRODUCT = [p for top in ("daemon", "drivers", "simulators", "bench") for p in (REPO / top).rglob("*.py")]


def test_no_module_imports_another_packages_private_names():
    # Feature CLIs took _load_or_exit from the main CLI; shared helpers live in daemon/cli_support.py.
    offenders = []
    for path in PRODUCT:
        package = "suitemon." + ".".join(path.relative_to(REPO).parent.parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("suitemon."):
                same_package = node.module.rpartition(".")[0] == package or node.module == package
                offenders += [
                    f"{path.relative_to(REPO)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__") and not same_package
                ]
    assert PRODUCT and not offenders, offenders


def test_feature_clis_do_not_import_the_main_cli():
    importers = [
        str(p.relative_to(REPO))
        for p in PRODUCT
        if p != REPO / "daemon" / "cli.py"
        and any(
            isinstance(n, ast.ImportFrom) and n.module == "suitemon.daemon.cli"
            for n in ast.walk(ast.parse(p.read_text(), str(p)))
        )
    ]
    assert not importers, importers


def test_no_product_module_is_named_like_a_test():
    # pytest collects test_*.py and *_test.py; a product module so named reads as one (bells/weekly_test.py did).
    named = [
        str(p.relative_to(REPO))
        for p in PRODUCT
        if p.stem.startswith("test") or p.stem.endswith(("_test", "_tests"))
    ]
    assert PRODUCT and not named, named


def test_dicom_parsing_lives_in_the_dicom_package():
    # Dose extraction from DICOM belongs with DICOM: pydicom is read only under daemon/dicom/ in the daemon.
    outside = []
    for path in (REPO / "daemon").rglob("*.py"):
        if (REPO / "daemon" / "dicom") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            outside += [
                f"{path.relative_to(REPO)}:{node.lineno} {m}"
                for m in mods
                if m.split(".")[0] in ("pydicom", "pynetdicom")
            ]
    assert not outside, outside
    assert (REPO / "daemon" / "dicom" / "dose_sr.py").exists() and (
        REPO / "daemon" / "dicom" / "dose_pet.py"
    ).exists()
