"""The table of device kinds: one row per kind, naming its config, driver, rules and simulator.

Entries are ``module:attribute`` strings loaded on first use, so adding a kind is
one row here and nothing else in the core. A failed load names what it could not load.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable


@dataclass(frozen=True)
class Kind:
    config: str
    driver: str
    rules: str
    simulator: str | None = None
    # Optional: cfg -> iterable of (key path, message) cross-reference errors.
    check: str | None = None


KINDS: dict[str, Kind] = {
    "modbus_points": Kind(
        config="drivers.modbus_points:Config",
        driver="drivers.modbus_points:ModbusPointsDriver",
        rules="daemon.rules.points:PointRules",
        simulator="simulators.modbus_points:PointsSimulator",
    ),
    "ups_apc": Kind(
        config="drivers.ups_apc:Config",
        driver="drivers.ups_apc:ApcUpsDriver",
        rules="daemon.rules.ups_apc:UpsRules",
        simulator="simulators.ups_apc:ApcUpsSimulator",
    ),
    # --- dispenser (issue 6) ---
    "dispenser": Kind(
        config="drivers.dispenser:Config",
        driver="drivers.dispenser:DispenserDriver",
        rules="daemon.rules.dispenser:DispenserRules",
        simulator="simulators.dispenser:DispenserSimulator",
        check="daemon.dose_config:check",
    ),
    # --- radiation (issue 5) ---
    "area_monitor_modbus": Kind(
        config="drivers.area_monitor_modbus:Config",
        driver="drivers.area_monitor_modbus:AreaMonitorDriver",
        rules="daemon.rules.radiation:RadiationRules",
        simulator="simulators.area_monitor:AreaMonitorSimulator",
        check="drivers.area_monitor_modbus:check",
    ),
    "ludlum375": Kind(
        config="drivers.ludlum375:Config",
        driver="drivers.ludlum375:Ludlum375Driver",
        rules="daemon.rules.radiation:RadiationRules",
        simulator="simulators.ludlum375:Ludlum375Simulator",
        check="drivers.ludlum375:check",
    ),
    # --- bells (issue 3) ---
    "callbell_io": Kind(
        config="drivers.callbell_io:Config",
        driver="drivers.callbell_io:CallBellDriver",
        rules="daemon.rules.callbell:CallBellRules",
        simulator="simulators.callbell_io:CallBellSimulator",
        check="daemon.bells:check_config",
    ),
}

# Top-level config sections added by features (name -> "module:Model").
SECTIONS: dict[str, str] = {}
SECTIONS["board"] = "daemon.board.config:BoardConfig"
# Cross-reference checks for a section, run when it is present:
# name -> "module:function"; function(cfg) yields (key path, message) pairs.
SECTION_CHECKS: dict[str, str] = {}

# --- radiation (issue 5) ---
SECTIONS["radiation"] = "drivers.radiation:RadiationSection"
SECTION_CHECKS["radiation"] = "drivers.radiation:check_section"

# --- dispenser (issue 6) ---
SECTIONS["dispensing"] = "daemon.dose_config:DispensingConfig"
SECTIONS["uptake"] = "daemon.dose_config:UptakeConfig"

# --- dicom (issue 7) ---
SECTIONS["dicom"] = "daemon.dicom_config:DicomConfig"
SECTION_CHECKS["dicom"] = "daemon.dicom_config:check"

# Features that are not a polled device (shutdown sequencer, DICOM receiver, uptake
# timers): name -> "module:factory"; factory(ctx) returns an object with async start()/stop().
SERVICES: dict[str, str] = {
    "occupancy": "daemon.occupancy:factory",
    "uptake": "daemon.uptake:factory",
    "dose_summary": "daemon.dose_summary:factory",
    "dicom": "daemon.dicom_service:factory",
    "bells": "daemon.bells:BellsService",  # deteriorate / bell_test commands (no-op without call bells)
}
# A service whose config section is absent is not started: service name -> section name.
SERVICE_SECTIONS: dict[str, str] = {}
SERVICE_SECTIONS["dicom"] = "dicom"
SECTIONS["board"] = "daemon.board.config:BoardConfig"


class KindLoadError(ImportError):
    pass


def load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise KindLoadError(f"cannot load {attr!r} from module {module!r}: {err}") from err


def names() -> list[str]:
    return list(KINDS)


def config_model(kind: str):
    return load(KINDS[kind].config)


def driver_class(kind: str):
    return load(KINDS[kind].driver)


def rules_class(kind: str):
    return load(KINDS[kind].rules)


def simulator_class(kind: str):
    ref = KINDS[kind].simulator
    return load(ref) if ref else None


def semantic_check(kind: str) -> Callable[[Any], Iterable[tuple[str, str]]] | None:
    ref = KINDS[kind].check
    return load(ref) if ref else None


def sections() -> dict[str, Any]:
    return {name: load(ref) for name, ref in SECTIONS.items()}

# Sub-commands added by features: "module:function"; function(subparsers) adds its parser.
CLI_EXTENSIONS: list[str] = []
CLI_EXTENSIONS.append("daemon.board.cli:add_parser")
CLI_EXTENSIONS.append("daemon.dose_summary:add_parser")

# Simulators that are not devices (e.g. the shutdown targets that answer the sequencer):
# name -> "module:factory"; factory(cfg) returns a simulators.base.Simulator or None.
# ``suitemon sim`` runs them beside the device simulators, under that name.
SIM_EXTRAS: dict[str, str] = {}

# --- ups / safe shutdown (issue 4) ---
SECTIONS["shutdown"] = "daemon.shutdown.config:ShutdownConfig"
SERVICES["shutdown"] = "daemon.shutdown.sequencer:factory"
SERVICE_SECTIONS["shutdown"] = "shutdown"
CLI_EXTENSIONS.append("daemon.shutdown.cli:add_parser")
SIM_EXTRAS["shutdown_targets"] = "simulators.shutdown_target:from_config"
SECTION_CHECKS["shutdown"] = "daemon.shutdown.config:check_refs"
CLI_EXTENSIONS.append("daemon.bells_report:add_parser")  # suitemon bells report

# --- dicom (issue 7) ---
CLI_EXTENSIONS.append("daemon.dicom_cli:add_parser")
SIM_EXTRAS["scanner"] = "simulators.scanner:from_config"
