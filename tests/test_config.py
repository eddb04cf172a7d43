"""Config validation: every error with its key path, exit code 2, before any port opens."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO

from suitemon.daemon.config import ConfigError, load_config, parse_config

EXAMPLE = REPO / "examples" / "suite.toml"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", *args], capture_output=True, text=True, cwd=REPO
    )


def test_example_suite_is_valid():
    r = run_cli("check-config", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout and "petct-north" in r.stdout


def test_three_mistakes_are_all_reported_with_paths_and_exit_2(tmp_path):
    text = EXAMPLE.read_text()
    text = text.replace('port = 5020', 'port = 70000')  # out of range
    text = text.replace('keepalive_s = 15', 'keepalive_s = 15\nkeepalive = 3')  # unknown key
    text = text.replace('{ role = "room_nurse", timeout_s = 30 }', '{ role = "room_nurse", timeout_s = -1 }')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    r = run_cli("check-config", str(bad))
    assert r.returncode == 2
    err = r.stderr
    assert "3 errors" in err, err
    assert "devices.hotlab_env.port:" in err
    assert "mqtt.keepalive: unknown key" in err
    assert "ladders.deterioration.steps.0.timeout_s:" in err


def test_run_refuses_invalid_config_before_opening_ports(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nid = "Bad Id"\nname = "x"\n')
    r = run_cli("run", "-c", str(bad))
    assert r.returncode == 2
    assert "site.id:" in r.stderr
    assert not (tmp_path / "state").exists()


def test_not_toml_and_missing_file_are_config_errors(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[site\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "not valid TOML" in str(e.value)
    assert run_cli("check-config", str(tmp_path / "nope.toml")).returncode == 2


def test_cross_references_are_checked():
    data = {
        "site": {"id": "s", "name": "S"},
        "roles": {"a": {"name": "A", "recipients": ["x"]}},
        "ladders": {"l": {"steps": [{"role": "ghost", "timeout_s": 5, "failsafe": True}]}},
        "alarm_types": {"emergency": {"priority": "high", "kind": "clinical", "emergency": True}},
    }
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    paths = {i.path for i in e.value.issues}
    assert paths == {
        "ladders.l.steps.0.role",
        "alarm_types.emergency.protocol",
        "alarm_types.emergency.ladder",
    }


def test_ladder_needs_failsafe_last_step():
    data = {
        "site": {"id": "s", "name": "S"},
        "roles": {"a": {"name": "A", "recipients": ["x"]}},
        "ladders": {"l": {"steps": [{"role": "a", "timeout_s": 5}]}},
    }
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert [str(i) for i in e.value.issues] == ["ladders.l: the last step must be marked failsafe = true"]


def test_unknown_device_kind_names_the_known_ones():
    data = {"site": {"id": "s", "name": "S"}, "devices": {"x": {"kind": "toaster"}}}
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert e.value.issues[0].path in ("devices.x", "devices.x.kind")
    assert "modbus_points" in e.value.issues[0].message


def test_rtu_device_needs_a_serial_port():
    data = {
        "site": {"id": "s", "name": "S"},
        "devices": {"io": {"kind": "modbus_points", "transport": "rtu"}},
    }
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert str(e.value.issues[0]) == "devices.io: serial_port is required when transport = 'rtu'"
