"""The command line is self-explaining: help for every option, -c everywhere, one default config."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
from helpers import REPO

from suitemon.daemon.cli import DEFAULT_CONFIG, build_parser

# Sub-commands that read no config at all (so -c would mean nothing there).
NO_CONFIG = {"scanner-sim write"}
# Commands whose -c is another kind of file, with its own default.
OTHER_DEFAULT = {"fleet": "/etc/suitemon/fleet.toml"}


def _walk(parser: argparse.ArgumentParser, path: str = ""):
    """Yield (command path, parser, subparsers action) for every parser of the tree."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}".strip())


def _run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "80"},
    )


def test_every_option_of_every_command_has_help():
    missing = []
    commands = 0
    for path, parser in _walk(build_parser()):
        commands += 1
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [
                    f"{path} {c.dest}: no one-line help"
                    for c in action._choices_actions
                    if not (c.help or "").strip()
                ]
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{path or 'suitemon'} {'/'.join(action.option_strings) or action.dest}")
    assert commands >= 12, (
        commands
    )  # the feature CLIs (the `cli` of feature rows in kinds.py) are in the tree
    assert not missing, "options without help:\n" + "\n".join(missing)


def test_every_command_that_reads_a_config_takes_dash_c_with_the_default():
    without = []
    for path, parser in _walk(build_parser()):
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions) or not path:
            continue  # a group of commands, not a command
        opts = {s: a for a in parser._actions for s in a.option_strings}
        if path in NO_CONFIG:
            continue
        if "-c" not in opts or "--config" not in opts:
            without.append(path)
        elif path not in ("demo", "check-config") and opts["-c"].default != OTHER_DEFAULT.get(
            path, DEFAULT_CONFIG
        ):
            without.append(f"{path} (default {opts['-c'].default!r})")
    assert not without, f"commands without -c/--config {DEFAULT_CONFIG}: {without}"


def test_top_level_help_lists_each_command_on_one_line():
    out = _run("--help").stdout
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = out.splitlines()
    for choice in sub._choices_actions:
        assert any(ln.split() and ln.split()[0] == choice.dest and choice.help in ln for ln in lines), (
            f"{choice.dest!r} not on one line with its help in:\n{out}"
        )


def test_check_config_takes_dash_c_and_keeps_the_positional(tmp_path):
    example = REPO / "examples" / "suite.toml"
    r = _run("check-config", "-c", str(example), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{example}: valid" in r.stdout
    assert _run("check-config", str(example), cwd=tmp_path).returncode == 0
    r = _run("check-config", "-c", str(example), str(tmp_path / "other.toml"), cwd=tmp_path)
    assert r.returncode == 2 and "two configs given" in r.stderr


def test_bad_config_via_dash_c_exits_2_with_every_key_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nid = "Bad Id"\nname = "x"\n[mqtt]\nport = 70000\n')
    r = _run("check-config", "-c", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert "site.id:" in r.stderr and "mqtt.port:" in r.stderr


def test_default_config_path_is_used_when_no_dash_c(tmp_path):
    # No -c: the daemon reads /etc/suitemon/suite.toml. On a test machine it is absent, so the
    # refusal names exactly that path (exit 2, nothing opened).
    if os.path.exists(DEFAULT_CONFIG):
        pytest.skip(f"{DEFAULT_CONFIG} exists on this machine")
    for cmd in (["run"], ["check-config"], ["journal", "verify"]):
        r = _run(*cmd, cwd=tmp_path)
        assert r.returncode == 2, (cmd, r.stderr)
        assert DEFAULT_CONFIG in r.stderr, (cmd, r.stderr)
