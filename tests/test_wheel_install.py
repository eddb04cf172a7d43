"""The built wheel, installed into a fresh venv outside the checkout, holds together (issue 13).

One import name (``suitemon``), no top-level ``daemon``/``drivers``/``simulators``, the data the
demo needs shipped inside, and ``suitemon demo`` runs from another directory. Slow: it builds
the wheel and installs its dependencies (from pip's cache when warm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow

COLLIDING = ("daemon", "drivers", "simulators")
# Data the installed package needs, as globs over the checkout: every match must be installed.
SHIPPED = (
    "examples/suite.toml",
    "examples/scenarios/*.toml",
    "daemon/schemas/*.json",
    "drivers/profiles/*.toml",
    "daemon/board/static/*",
)


def shipped_files() -> list[str]:
    files = sorted(
        {str(p.relative_to(REPO)) for pattern in SHIPPED for p in REPO.glob(pattern) if p.is_file()}
    )
    assert len(files) > 30, files  # the globs still match the checkout's layout
    return files


def _run(args, *, cwd, timeout, env=None):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{args[:3]} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy: setuptools reuses an in-tree build/ dir, which would ship
    # modules deleted since the last build and hide a missing package-data rule.
    src = tmp / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "out"
        ),
    )
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        cwd=tmp,
        timeout=300,
    )
    wheel = next(dist.glob("suitemon-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp, timeout=120)
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", f"{wheel}[demo]"], cwd=tmp, timeout=600)
    site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp, timeout=30
        ).stdout.strip()
    )
    return tmp, venv, site


def test_wheel_installs_one_import_name_with_its_data(installed):
    tmp, venv, site = installed
    assert (site / "suitemon" / "__init__.py").is_file()
    for name in COLLIDING:
        assert not (site / name).exists(), f"top-level {name!r} installed into site-packages"
        assert not (site / f"{name}.py").exists()
    missing = [rel for rel in shipped_files() if not (site / "suitemon" / rel).is_file()]
    assert not missing, f"not shipped in the wheel: {missing}"
    files = _run([str(venv / "bin" / "pip"), "show", "-f", "suitemon"], cwd=tmp, timeout=60).stdout
    listed = [ln.strip() for ln in files.split("Files:", 1)[1].splitlines() if ln.strip()]
    tops = {f.split("/", 1)[0] for f in listed}
    assert "suitemon" in tops and not tops & set(COLLIDING), sorted(tops)
    assert "suitemon/examples/suite.toml" in listed
    # The import resolves to the installed copy, not to a checkout on some path.
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import suitemon.daemon.cli as m; print(m.__file__)"],
        cwd=tmp,
        timeout=60,
    ).stdout.strip()
    assert where.startswith(str(site)), where


def test_installed_demo_runs_from_another_directory(installed):
    tmp, venv, _ = installed
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run(
        [str(venv / "bin" / "suitemon"), "demo", "--duration", "20", "--no-view"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "demo: broker" in out, out[-4000:]
    assert "daemon online" in out, out[-4000:]  # the live view saw the daemon's retained status
    assert "no config at" not in out
