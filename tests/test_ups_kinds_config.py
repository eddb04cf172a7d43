"""UPS kinds in the configuration: check-config names them, the shutdown sequencer accepts any
kind fed to the UPS rules, and a NUT UPS refuses what it cannot do (outlet groups)."""

from __future__ import annotations

import pytest
from helpers import dump_toml
from shutdown_helpers import short_shutdown
from test_config import run_cli

from suitemon.daemon.config import ConfigError, parse_config

NUT = {"kind": "ups_nut", "host": "127.0.0.1", "port": 3493, "ups": "petct"}


def cfg_with(dev: dict, shutdown: dict | None = None) -> dict:
    d = {"site": {"id": "k", "name": "k"}, "devices": {"ups": dev}}
    if shutdown is not None:
        d["shutdown"] = shutdown
    return d


def test_check_config_names_the_ups_kinds_and_marks_the_one_in_use(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(dump_toml(cfg_with(NUT)))
    r = run_cli("check-config", str(path))
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith("ups kinds"))
    assert "ups_apc (APC Modbus)" in line and "ups_nut (Network UPS Tools (upsd)) *" in line
    assert "ups_snmp (SNMP UPS-MIB)" in line


def test_shutdown_accepts_a_nut_ups_but_not_its_missing_outlet_groups():
    sd = short_shutdown(
        targets={}, steps=[{"id": "ups_outlets", "kind": "ups", "outlet_delay_s": 5, "timeout_s": 5}]
    )
    parse_config(cfg_with(NUT, sd))  # a NUT UPS may drive the sequence
    grouped = {
        **sd,
        "steps": [{"id": "ups_outlets", "kind": "ups", "timeout_s": 5}],
        "outlet_groups": {
            "scanner": {"ups_group": "switched_group_0", "off_delay_s": 60},
            "supervision": {"ups_group": "main_group", "off_delay_s": 300, "supervision": True},
        },
    }
    with pytest.raises(ConfigError) as e:
        parse_config(cfg_with(NUT, grouped))
    assert "shutdown.outlet_groups.scanner.ups_group" in str(e.value) and "commanded as a whole" in str(
        e.value
    )


def test_a_nut_password_needs_a_username_and_names_must_be_nut_names(tmp_path):
    with pytest.raises(ConfigError, match="password_file needs username"):
        parse_config(cfg_with({**NUT, "password_file": str(tmp_path / "pw")}))
    with pytest.raises(ConfigError, match=r"devices.ups.ups"):
        parse_config(cfg_with({**NUT, "ups": "pet ct\nFSD"}))


def test_a_killed_simulator_leaves_no_upsd_or_snmpd_running(make_suite, tmp_path):
    """`suitemon sim` killed with SIGKILL never runs its stop(): its real servers must die with it
    (one frozen on purpose included), or they would hold the loopback ports and run on."""
    import psutil
    from helpers import free_port, wait_until

    suite = make_suite(
        {
            "nut": {**NUT, "port": free_port()},
            "card": {"kind": "ups_snmp", "port": free_port(), "version": "2c", "community": "c"},
        }
    )
    sim = suite.start_sims()
    servers = [
        p
        for p in psutil.Process(sim.pid).children(recursive=True)
        if p.name() in ("upsd", "dummy-ups", "snmpd")
    ]
    assert {p.name() for p in servers} == {"upsd", "dummy-ups", "snmpd"}, servers
    suite.sim("nut", "unplug")  # upsd frozen (SIGSTOP): SIGTERM alone would not end it
    sim.kill9()
    wait_until(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in servers),
        10,
        what="upsd, dummy-ups and snmpd gone",
    )
