"""The feature table: one frozen row per device kind or feature, read by the core.

A row names, as ``module:attribute`` strings loaded on first use, everything the core
needs from a feature: its config (a device model or a top-level section), driver,
rules, simulator, service, sub-command, MQTT routes and cross-reference check. Adding a
feature is one ``Feature(...)`` row in ``FEATURES`` and nothing else in the core; a
second row with the same name stops the import (two rows would silently shadow each
other). A failed load names what it could not load.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

from suitemon.drivers.base import Driver
from suitemon.drivers.config import DeviceConfig

T = TypeVar("T")


class FeatureError(ValueError):
    """The table itself is wrong (duplicate name, half a device kind)."""


@dataclass(frozen=True)
class Feature:
    # Device kind (``kind = "<name>"`` under [devices.*]) or the [<name>] section / service name.
    name: str
    # A polled device kind: config model, driver and rules together, or none of them.
    device_config: str | None = None
    driver: str | None = None
    rules: str | None = None
    # Device kind: simulator class(did, dev).
    simulator: str | None = None
    # A top-level config section [<name>]: pydantic model; ``cfg.<name>`` is None when absent.
    section: str | None = None
    # fn(cfg) -> iterable of (key path, message). A device kind's runs always; a section's
    # only when the section is present.
    check: str | None = None
    # factory(ctx) -> object with async start()/stop(), registered as ctx.services[<name>].
    service: str | None = None
    # Start the service only when [<name>] is present.
    service_needs_section: bool = False
    # add_parser(subparsers): the feature's sub-command(s).
    cli: str | None = None
    # factory(cfg) -> Simulator | None: a simulator that is not a device, run by ``suitemon sim``
    # under <name> (e.g. the shutdown targets, the scanner).
    sim_factory: str | None = None
    # fn(event, topics, site) -> extra messages put on the broker with that event.
    routes: tuple[str, ...] = ()
    # fn(cfg, alarm, recipients, event_id) -> delivery entries of a notification for the recipients
    # this channel reaches (daemon/delivery_plan.py); part of the alarm.notify event.
    delivery_plan: str | None = None

    def __post_init__(self) -> None:
        device = (self.device_config, self.driver, self.rules)
        if any(device) and not all(device):
            raise FeatureError(f"feature {self.name!r}: a device kind needs device_config, driver and rules")
        if self.is_device and (self.section or self.service or self.sim_factory):
            raise FeatureError(
                f"feature {self.name!r}: a device kind row names no section, service or "
                "sim_factory (give those their own row)"
            )
        if self.simulator and not self.is_device:
            raise FeatureError(f"feature {self.name!r}: simulator is for device kinds; use sim_factory")
        if self.service_needs_section and not (self.service and self.section):
            raise FeatureError(f"feature {self.name!r}: service_needs_section needs a service and a section")
        routes: object = self.routes  # the annotation is not enforced at run time: a row may pass a str
        if isinstance(routes, str):
            raise FeatureError(f"feature {self.name!r}: routes is a tuple of refs, not one string")

    @property
    def is_device(self) -> bool:
        return self.driver is not None


def index(rows: Iterable[Feature]) -> Mapping[str, Feature]:
    """Rows by name, refusing a name that appears twice."""
    table: dict[str, Feature] = {}
    for row in rows:
        if row.name in table:
            raise FeatureError(f"feature {row.name!r} is defined twice in the feature table")
        table[row.name] = row
    return MappingProxyType(table)


FEATURES: Mapping[str, Feature] = index(
    (
        # `suitemon demo` first: where it stood in the core's help
        Feature("demo", cli="suitemon.daemon.demo.cli:add_parser"),
        # --- device kinds ---
        Feature(
            "modbus_points",
            device_config="suitemon.drivers.modbus_points:Config",
            driver="suitemon.drivers.modbus_points:ModbusPointsDriver",
            rules="suitemon.daemon.rules.points:PointRules",
            simulator="suitemon.simulators.modbus_points:PointsSimulator",
        ),
        Feature(
            "ups_apc",
            device_config="suitemon.drivers.ups_apc:Config",
            driver="suitemon.drivers.ups_apc:ApcUpsDriver",
            rules="suitemon.daemon.ups.rules:UpsRules",
            simulator="suitemon.simulators.ups_apc:ApcUpsSimulator",
        ),
        # --- UPS from any vendor (issue 16): same rules, other wires ---
        Feature(
            "ups_nut",
            device_config="suitemon.drivers.ups_nut:Config",
            driver="suitemon.drivers.ups_nut:NutUpsDriver",
            rules="suitemon.daemon.ups.rules:UpsRules",
            simulator="suitemon.simulators.ups_nut:NutUpsSimulator",
        ),
        Feature(
            "ups_snmp",
            device_config="suitemon.drivers.ups_snmp:Config",
            driver="suitemon.drivers.ups_snmp:SnmpUpsDriver",
            rules="suitemon.daemon.ups.rules:UpsRules",
            simulator="suitemon.simulators.ups_snmp:SnmpUpsSimulator",
        ),
        Feature(
            "dispenser",
            device_config="suitemon.drivers.dispenser:Config",
            driver="suitemon.drivers.dispenser:DispenserDriver",
            rules="suitemon.daemon.doses.rules:DispenserRules",
            simulator="suitemon.simulators.dispenser:DispenserSimulator",
            check="suitemon.daemon.doses.config:check",
        ),
        Feature(
            "area_monitor_modbus",
            device_config="suitemon.drivers.area_monitor_modbus:Config",
            driver="suitemon.drivers.area_monitor_modbus:AreaMonitorDriver",
            rules="suitemon.daemon.radiation.rules:RadiationRules",
            simulator="suitemon.simulators.area_monitor:AreaMonitorSimulator",
            check="suitemon.drivers.area_monitor_modbus:check",
        ),
        Feature(
            "ludlum375",
            device_config="suitemon.drivers.ludlum375:Config",
            driver="suitemon.drivers.ludlum375:Ludlum375Driver",
            rules="suitemon.daemon.radiation.rules:RadiationRules",
            simulator="suitemon.simulators.ludlum375:Ludlum375Simulator",
            check="suitemon.drivers.ludlum375:check",
        ),
        Feature(
            "callbell_io",
            device_config="suitemon.drivers.callbell_io:Config",
            driver="suitemon.drivers.callbell_io:CallBellDriver",
            rules="suitemon.daemon.bells.rules:CallBellRules",
            simulator="suitemon.simulators.callbell_io:CallBellSimulator",
            check="suitemon.daemon.bells.service:check_config",
        ),
        # --- features that are not a polled device ---
        Feature(
            "board",
            section="suitemon.daemon.board.config:BoardConfig",
            cli="suitemon.daemon.board.cli:add_parser",
        ),
        Feature(
            "radiation",
            section="suitemon.drivers.radiation:RadiationSection",
            check="suitemon.drivers.radiation:check_section",
        ),
        Feature("occupancy", service="suitemon.daemon.radiation.occupancy:factory"),
        Feature(
            "dispensing",
            section="suitemon.daemon.doses.config:DispensingConfig",
            routes=(
                "suitemon.daemon.doses.routes:dose_messages",
            ),  # dose/administration, dose/summary, uptake/+/ready
        ),
        Feature(
            "uptake",
            section="suitemon.daemon.doses.config:UptakeConfig",
            service="suitemon.daemon.doses.uptake:factory",
        ),
        Feature(
            "dose_summary",
            service="suitemon.daemon.doses.summary:factory",
            cli="suitemon.daemon.doses.summary:add_parser",
        ),
        Feature(
            "dicom",
            section="suitemon.daemon.dicom.config:DicomConfig",
            check="suitemon.daemon.dicom.config:check",
            service="suitemon.daemon.dicom.service:factory",
            service_needs_section=True,
            cli="suitemon.daemon.dicom.cli:add_parser",
            routes=("suitemon.daemon.dicom.routes:dose_summary",),
        ),
        Feature("scanner", sim_factory="suitemon.simulators.scanner:from_config"),
        # deteriorate / bell_test commands (no-op without call bells); `suitemon bells report`
        Feature(
            "bells",
            service="suitemon.daemon.bells.service:BellsService",
            cli="suitemon.daemon.bells.report:add_parser",
        ),
        Feature(
            "shutdown",
            section="suitemon.daemon.shutdown.config:ShutdownConfig",
            check="suitemon.daemon.shutdown.config:check_refs",
            service="suitemon.daemon.shutdown.sequencer:factory",
            service_needs_section=True,
            cli="suitemon.daemon.shutdown.cli:add_parser",
            routes=("suitemon.daemon.shutdown.messages:shutdown_messages",),
        ),
        Feature("shutdown_targets", sim_factory="suitemon.simulators.shutdown_target:from_config"),
        # Prometheus endpoint, only with a [metrics] section
        Feature(
            "metrics",
            section="suitemon.daemon.prometheus.config:MetricsConfig",
            service="suitemon.daemon.prometheus.service:factory",
            service_needs_section=True,
        ),
        # Governance reports from the journal alone (docs/reports.md)
        Feature("report", cli="suitemon.daemon.report.cli:add_parser"),
        # The central collector and cross-site report (docs/fleet.md): a sub-command, not in a site's path
        Feature("fleet", cli="suitemon.daemon.fleet.cli:add_parser"),
        # ESPA 4.4.4 paging with delivery tracking (docs/paging.md), its base-station simulator
        Feature(
            "paging",
            section="suitemon.daemon.paging.config:PagingConfig",
            check="suitemon.daemon.paging.config:check",
            service="suitemon.daemon.paging.service:factory",
            service_needs_section=True,
            routes=("suitemon.daemon.paging.pages:delivery_messages",),
            delivery_plan="suitemon.daemon.paging.plan:espa_plan",
        ),
        Feature("paging_base", sim_factory="suitemon.simulators.espa_pager:from_config"),
        # Other channels through apprise (e-mail, SMS gateways, ...), same delivery tracking
        Feature(
            "messaging",
            section="suitemon.daemon.paging.apprise_channel:MessagingConfig",
            check="suitemon.daemon.paging.apprise_channel:check",
            service="suitemon.daemon.paging.apprise_channel:factory",
            service_needs_section=True,
            delivery_plan="suitemon.daemon.paging.plan:apprise_plan",
        ),
    )
)

# The device kinds alone (read-only view).
KINDS: Mapping[str, Feature] = MappingProxyType({n: f for n, f in FEATURES.items() if f.is_device})


# The UPS rules read only the shared UPS model (drivers/ups_model.py): every kind fed to them is a UPS
# the shutdown sequencer can watch, whatever its wire (Modbus, upsd, SNMP).
UPS_RULES = "suitemon.daemon.ups.rules:UpsRules"


def is_ups_kind(kind: str) -> bool:
    row = KINDS.get(kind)
    return row is not None and row.rules == UPS_RULES


class KindLoadError(ImportError):
    pass


def load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise KindLoadError(f"cannot load {attr!r} from module {module!r}: {err}") from err


def with_field(name: str) -> list[Feature]:
    """Rows that set ``name`` (a Feature field), in table order."""
    if name not in {f.name for f in fields(Feature)}:
        raise AttributeError(f"Feature has no field {name!r}")
    return [row for row in FEATURES.values() if getattr(row, name)]


def names() -> list[str]:
    return list(KINDS)


def _missing(kind: str, what: str) -> NoReturn:
    raise KindLoadError(f"device kind {kind!r} names no {what}")


def _load_class(ref: str | None, base: type[T]) -> type[T]:
    """A class named in the table, checked to be what the core will use it as."""
    if ref is None:
        raise KindLoadError(f"no {base.__name__} is named in the feature table")
    obj = load(ref)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise KindLoadError(f"{ref!r} is not a {base.__name__} subclass: {obj!r}")
    return obj


def config_model(kind: str) -> type[DeviceConfig]:
    return _load_class(KINDS[kind].device_config, DeviceConfig)


def driver_class(kind: str) -> type[Driver]:
    # Checked here rather than by _load_class: mypy takes no abstract class for a type[T] argument.
    ref = KINDS[kind].driver
    obj = load(ref) if ref else None
    if not (isinstance(obj, type) and issubclass(obj, Driver)):
        raise KindLoadError(f"{ref!r} is not a Driver subclass: {obj!r}")
    return obj


def rules_class(kind: str) -> Callable[..., Any]:
    """The kind's rules class(did, dev, ctx). Its base (daemon/rules) is not imported here: it imports
    the alarm engine, which imports the config, which imports this table (an import cycle)."""
    ref = KINDS[kind].rules
    if not ref:
        _missing(kind, "rules")
    cls: Callable[..., Any] = load(ref)
    return cls


def simulator_class(kind: str) -> Callable[..., Any] | None:
    """The kind's simulator class(did, dev); its base lives in the simulators, which the core does not import."""
    ref = KINDS[kind].simulator
    return load(ref) if ref else None


def semantic_check(kind: str) -> Callable[[Any], Iterable[tuple[str, str]]] | None:
    ref = KINDS[kind].check
    return load(ref) if ref else None


def sections() -> dict[str, Any]:
    # row.section is set on every row with_field returns; the condition narrows it for the type checker.
    return {row.name: load(row.section) for row in with_field("section") if row.section}


_routes: list[Callable[..., Any]] | None = None


def routes() -> list[Callable[..., Any]]:
    """Every feature's route functions, loaded once."""
    global _routes
    if _routes is None:
        _routes = [load(ref) for row in with_field("routes") for ref in row.routes]
    return _routes


_planners: list[Callable[..., Any]] | None = None


def delivery_planners() -> list[Callable[..., Any]]:
    """Every channel's delivery planner, loaded once."""
    global _planners
    if _planners is None:
        _planners = [load(row.delivery_plan) for row in with_field("delivery_plan")]  # type: ignore[arg-type]
    return _planners
