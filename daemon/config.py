"""Suite configuration: TOML in, a validated frozen model out, or every error with its key path.

Validation happens before anything opens a port; ``suitemon check-config`` and
``suitemon run`` share :func:`load_config`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError, create_model, model_validator

from suitemon.daemon import kinds
from suitemon.drivers.config import AlarmKind, Id, Priority, Strict


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """The configuration is invalid; ``issues`` holds every problem found."""

    def __init__(self, issues: list[ConfigIssue], source: str | None = None):
        self.issues = issues
        self.source = source
        super().__init__("\n".join(str(i) for i in issues))


class SiteConfig(Strict):
    id: Id = Field(description="used in every MQTT topic: suitemon/<site>/...")
    name: str
    timezone: str = "Europe/London"


class TlsConfig(Strict):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_hostname: bool = False


class MqttConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(15, ge=2, le=600)
    base_topic: str = "suitemon"
    max_inflight: int = Field(100, ge=1, le=10000)


class StateConfig(Strict):
    dir: Path = Path("/var/lib/suitemon")
    synchronous: Literal["full", "normal"] = "full"


class JournalConfig(Strict):
    """The keyed chain and its witness (daemon/checkpoints.py, docs/deployment.md)."""

    chain_key_file: Path | None = Field(
        None,
        description="HMAC key of the chain; default <state.dir>/journal-chain.key, created on first start",
    )
    checkpoint_key_file: Path | None = Field(
        None,
        description="Ed25519 signing key (PEM); default <state.dir>/journal-checkpoint.key, created "
        "on first start with its public half next to it (.pub)",
    )
    checkpoint_file: Path | None = Field(None, description="default: <state.dir>/journal-checkpoints.jsonl")
    # The issue asks for a checkpoint at least every minute: more than 60 s is refused.
    checkpoint_period_s: float = Field(60.0, ge=1, le=60)

    def paths(self, state_dir: Path) -> tuple[Path, Path, Path]:
        return (
            self.chain_key_file or state_dir / "journal-chain.key",
            self.checkpoint_key_file or state_dir / "journal-checkpoint.key",
            self.checkpoint_file or state_dir / "journal-checkpoints.jsonl",
        )


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class AreaConfig(Strict):
    name: str
    kind: Literal["uptake_room", "hot_lab", "scanner_room", "control_room", "corridor", "other"]


Actor = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class RoleConfig(Strict):
    """A role: who is notified at its ladder steps, and which commands its holders may send."""

    name: str
    recipients: list[Id] = Field(default_factory=list, description="notified at ladder steps; hold the role")
    members: list[Actor] = Field(
        default_factory=list, description="broker users who hold the role for commands, not notified"
    )
    commands: list[str] = Field(
        default_factory=list, description="verbs the role may send ('*': all); default deny (docs/broker.md)"
    )
    areas: list[Id] = Field(default_factory=list, description="limit the grant to commands for these areas")

    @model_validator(mode="after")
    def _someone(self) -> RoleConfig:
        if not self.recipients and not self.members:
            raise ValueError("a role needs recipients or members")
        return self


class LadderStep(Strict):
    role: Id
    timeout_s: float = Field(gt=0, le=3600)
    failsafe: bool = False
    critical_care: bool = Field(False, description="NEWS2 >= 7 starts the ladder at this step")


class LadderConfig(Strict):
    steps: list[LadderStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _failsafe_last(self) -> LadderConfig:
        if not self.steps[-1].failsafe:
            raise ValueError("the last step must be marked failsafe = true")
        if any(s.failsafe for s in self.steps[:-1]):
            raise ValueError("only the last step may be failsafe")
        return self


class ProtocolConfig(Strict):
    """What anyone receiving a deterioration alert must know (inspection finding)."""

    who: str
    number: str
    location: str = Field(description="what to say on the phone to find us")
    first_actions: list[str] = Field(min_length=1)


class AlarmTypeConfig(Strict):
    priority: Priority
    kind: AlarmKind
    latching: bool = False
    ladder: Id | None = None
    protocol: Id | None = None
    emergency: bool = False
    renotify_s: float | None = Field(None, gt=0)


class SimulationConfig(Strict):
    """Where ``suitemon sim`` listens for control commands (engineers, tests, scenarios)."""

    control_host: str = "127.0.0.1"
    control_port: int = Field(7390, ge=1, le=65535)


def _device_union():
    members = [kinds.config_model(k) for k in kinds.names()]
    if len(members) == 1:
        return members[0]
    # Union over a runtime tuple: the X | Y spelling cannot splat, so ruff UP007 must not rewrite it.
    return Annotated[Union[tuple(members)], Field(discriminator="kind")]  # noqa: UP007


def _root_model():
    Devices = dict[Id, _device_union()]  # type: ignore[valid-type]
    extra = {name: (model | None, None) for name, model in kinds.sections().items()}
    return create_model(
        "SuiteConfig",
        __base__=_SuiteBase,
        devices=(Devices, Field(default_factory=dict)),
        **extra,
    )


class _SuiteBase(Strict):
    site: SiteConfig
    mqtt: MqttConfig = MqttConfig()
    state: StateConfig = StateConfig()
    journal: JournalConfig = JournalConfig()
    logging: LoggingConfig = LoggingConfig()
    simulation: SimulationConfig = SimulationConfig()
    areas: dict[Id, AreaConfig] = Field(default_factory=dict)
    roles: dict[Id, RoleConfig] = Field(default_factory=dict)
    ladders: dict[Id, LadderConfig] = Field(default_factory=dict)
    protocols: dict[Id, ProtocolConfig] = Field(default_factory=dict)
    alarm_types: dict[str, AlarmTypeConfig] = Field(default_factory=dict)


_ROOT = None


def root_model():
    global _ROOT
    if _ROOT is None:
        _ROOT = _root_model()
    return _ROOT


SuiteConfig = Any  # the generated model class; typed loosely on purpose


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    # Tagged unions put the tag in the path (devices.ups.apc_ups.port): drop it.
    if len(parts) >= 3 and parts[0] == "devices" and parts[2] in kinds.names():
        del parts[2]
    return ".".join(parts)


def issues_from(err: ValidationError) -> list[ConfigIssue]:
    """Pydantic errors as config issues with key paths (the config and scenario files)."""
    out = []
    for e in err.errors(include_url=False):
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown device kind; known kinds: {', '.join(kinds.names())}"
        out.append(ConfigIssue(_format_loc(e["loc"]), msg))
    return out


def _semantic_issues(cfg) -> list[ConfigIssue]:
    """Cross-references the schema cannot see: ids that must name something."""
    issues: list[ConfigIssue] = []
    for did, dev in cfg.devices.items():
        if dev.location is not None and dev.location not in cfg.areas:
            issues.append(ConfigIssue(f"devices.{did}.location", f"unknown area '{dev.location}'"))
    for lid, ladder in cfg.ladders.items():
        for i, step in enumerate(ladder.steps):
            if step.role not in cfg.roles:
                issues.append(ConfigIssue(f"ladders.{lid}.steps.{i}.role", f"unknown role '{step.role}'"))
            elif not cfg.roles[step.role].recipients:
                issues.append(
                    ConfigIssue(
                        f"ladders.{lid}.steps.{i}.role", f"role '{step.role}' has no recipients to notify"
                    )
                )
    for tid, at in cfg.alarm_types.items():
        if at.ladder is not None and at.ladder not in cfg.ladders:
            issues.append(ConfigIssue(f"alarm_types.{tid}.ladder", f"unknown ladder '{at.ladder}'"))
        if at.protocol is not None and at.protocol not in cfg.protocols:
            issues.append(ConfigIssue(f"alarm_types.{tid}.protocol", f"unknown protocol '{at.protocol}'"))
        if at.emergency and at.protocol is None:
            issues.append(
                ConfigIssue(
                    f"alarm_types.{tid}.protocol",
                    "an emergency alarm type needs the site's emergency protocol",
                )
            )
        if at.emergency and at.ladder is None:
            issues.append(
                ConfigIssue(f"alarm_types.{tid}.ladder", "an emergency alarm type needs an escalation ladder")
            )
    from suitemon.daemon import access

    issues.extend(ConfigIssue(p, m) for p, m in access.check(cfg))
    for kind_name in kinds.names():
        check = kinds.semantic_check(kind_name)
        if check is not None:
            issues.extend(ConfigIssue(p, m) for p, m in check(cfg))
    for feature in kinds.with_field("check"):
        if feature.section and getattr(cfg, feature.name, None) is not None:
            issues.extend(ConfigIssue(p, m) for p, m in kinds.load(feature.check)(cfg))
    return issues


def parse_config(data: dict[str, Any], source: str | None = None):
    """Validate a config mapping; raise ConfigError with every issue found."""
    try:
        cfg = root_model().model_validate(data)
    except ValidationError as err:
        raise ConfigError(issues_from(err), source) from None
    issues = _semantic_issues(cfg)
    if issues:
        raise ConfigError(issues, source)
    return cfg


def load_config(path: str | Path):
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError([ConfigIssue("", f"cannot read {path}: {err.strerror}")], str(path)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError([ConfigIssue("", f"not valid TOML: {err}")], str(path)) from None
    cfg = parse_config(data, str(path))
    if not cfg.state.dir.is_absolute():
        # Relative state dirs are relative to the config file, not to the caller's cwd.
        cfg = cfg.model_copy(
            update={"state": cfg.state.model_copy(update={"dir": path.parent / cfg.state.dir})}
        )
    return cfg


def alarm_type(
    cfg, type_name: str, default_priority: Priority, default_kind: AlarmKind, default_latching: bool = False
) -> AlarmTypeConfig:
    """The site's settings for an alarm type, or the driver's defaults."""
    at = cfg.alarm_types.get(type_name)
    if at is not None:
        return at
    return AlarmTypeConfig(priority=default_priority, kind=default_kind, latching=default_latching)


__all__ = [
    "AlarmTypeConfig",
    "AreaConfig",
    "ConfigError",
    "ConfigIssue",
    "JournalConfig",
    "LadderConfig",
    "LadderStep",
    "LoggingConfig",
    "MqttConfig",
    "ProtocolConfig",
    "RoleConfig",
    "SiteConfig",
    "StateConfig",
    "TypeAdapter",
    "alarm_type",
    "load_config",
    "parse_config",
    "root_model",
]
