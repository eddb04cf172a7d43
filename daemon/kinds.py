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
        config="suitemon.drivers.modbus_points:Config",
        driver="suitemon.drivers.modbus_points:ModbusPointsDriver",
        rules="suitemon.daemon.rules.points:PointRules",
        simulator="suitemon.simulators.modbus_points:PointsSimulator",
    ),
    "ups_apc": Kind(
        config="suitemon.drivers.ups_apc:Config",
        driver="suitemon.drivers.ups_apc:ApcUpsDriver",
        rules="suitemon.daemon.ups.rules:UpsRules",
        simulator="suitemon.simulators.ups_apc:ApcUpsSimulator",
    ),
    # --- dispenser (issue 6) ---
    "dispenser": Kind(
        config="suitemon.drivers.dispenser:Config",
        driver="suitemon.drivers.dispenser:DispenserDriver",
        rules="suitemon.daemon.doses.rules:DispenserRules",
        simulator="suitemon.simulators.dispenser:DispenserSimulator",
        check="suitemon.daemon.doses.config:check",
    ),
    # --- radiation (issue 5) ---
    "area_monitor_modbus": Kind(
        config="suitemon.drivers.area_monitor_modbus:Config",
        driver="suitemon.drivers.area_monitor_modbus:AreaMonitorDriver",
        rules="suitemon.daemon.radiation.rules:RadiationRules",
        simulator="suitemon.simulators.area_monitor:AreaMonitorSimulator",
        check="suitemon.drivers.area_monitor_modbus:check",
    ),
    "ludlum375": Kind(
        config="suitemon.drivers.ludlum375:Config",
        driver="suitemon.drivers.ludlum375:Ludlum375Driver",
        rules="suitemon.daemon.radiation.rules:RadiationRules",
        simulator="suitemon.simulators.ludlum375:Ludlum375Simulator",
        check="suitemon.drivers.ludlum375:check",
    ),
    # --- bells (issue 3) ---
    "callbell_io": Kind(
        config="suitemon.drivers.callbell_io:Config",
        driver="suitemon.drivers.callbell_io:CallBellDriver",
        rules="suitemon.daemon.bells.rules:CallBellRules",
        simulator="suitemon.simulators.callbell_io:CallBellSimulator",
        check="suitemon.daemon.bells.service:check_config",
    ),
}

# Top-level config sections added by features (name -> "module:Model").
SECTIONS: dict[str, str] = {}
SECTIONS["board"] = "suitemon.daemon.board.config:BoardConfig"
# Cross-reference checks for a section, run when it is present:
# name -> "module:function"; function(cfg) yields (key path, message) pairs.
SECTION_CHECKS: dict[str, str] = {}

# --- radiation (issue 5) ---
SECTIONS["radiation"] = "suitemon.drivers.radiation:RadiationSection"
SECTION_CHECKS["radiation"] = "suitemon.drivers.radiation:check_section"

# --- dispenser (issue 6) ---
SECTIONS["dispensing"] = "suitemon.daemon.doses.config:DispensingConfig"
SECTIONS["uptake"] = "suitemon.daemon.doses.config:UptakeConfig"

# --- dicom (issue 7) ---
SECTIONS["dicom"] = "suitemon.daemon.dicom.config:DicomConfig"
SECTION_CHECKS["dicom"] = "suitemon.daemon.dicom.config:check"

# Features that are not a polled device (shutdown sequencer, DICOM receiver, uptake
# timers): name -> "module:factory"; factory(ctx) returns an object with async start()/stop().
SERVICES: dict[str, str] = {
    "occupancy": "suitemon.daemon.radiation.occupancy:factory",
    "uptake": "suitemon.daemon.doses.uptake:factory",
    "dose_summary": "suitemon.daemon.doses.summary:factory",
    "dicom": "suitemon.daemon.dicom.service:factory",
    "bells": "suitemon.daemon.bells.service:BellsService",  # deteriorate / bell_test commands (no-op without call bells)
}
# A service whose config section is absent is not started: service name -> section name.
SERVICE_SECTIONS: dict[str, str] = {}
SERVICE_SECTIONS["dicom"] = "dicom"
SECTIONS["board"] = "suitemon.daemon.board.config:BoardConfig"


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
CLI_EXTENSIONS.append("suitemon.daemon.board.cli:add_parser")
CLI_EXTENSIONS.append("suitemon.daemon.doses.summary:add_parser")

# Simulators that are not devices (e.g. the shutdown targets that answer the sequencer):
# name -> "module:factory"; factory(cfg) returns a suitemon.simulators.base.Simulator or None.
# ``suitemon sim`` runs them beside the device simulators, under that name.
SIM_EXTRAS: dict[str, str] = {}

# --- ups / safe shutdown (issue 4) ---
SECTIONS["shutdown"] = "suitemon.daemon.shutdown.config:ShutdownConfig"
SERVICES["shutdown"] = "suitemon.daemon.shutdown.sequencer:factory"
SERVICE_SECTIONS["shutdown"] = "shutdown"
CLI_EXTENSIONS.append("suitemon.daemon.shutdown.cli:add_parser")
SIM_EXTRAS["shutdown_targets"] = "suitemon.simulators.shutdown_target:from_config"
SECTION_CHECKS["shutdown"] = "suitemon.daemon.shutdown.config:check_refs"
CLI_EXTENSIONS.append("suitemon.daemon.bells.report:add_parser")  # suitemon bells report

# --- dicom (issue 7) ---
CLI_EXTENSIONS.append("suitemon.daemon.dicom.cli:add_parser")
SIM_EXTRAS["scanner"] = "suitemon.simulators.scanner:from_config"

# --- governance reports (issue 17) ---
CLI_EXTENSIONS.append("suitemon.daemon.report.cli:add_parser")
