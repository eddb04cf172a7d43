"""The fleet file (``suitemon fleet run -c FLEETFILE``): cluster nodes, credentials, database."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import Field, ValidationError, field_validator

from suitemon.drivers.config import Id, Strict


class FleetMqtt(Strict):
    # Every node of the cluster: the collector moves to the next one when its node goes away.
    servers: list[str] = Field(min_length=1, description="host:port of each cluster node's MQTT listener")
    username: str
    password_file: Path
    ca_file: Path | None = Field(None, description="CA of the cluster's TLS certificates; none = plain TCP")
    keepalive_s: int = Field(10, ge=2, le=600)
    # Sites this collector stores: ["+"] = all. Disjoint lists partition the fleet between
    # collectors (NATS 2.9's MQTT has no shared subscriptions: docs/fleet.md).
    sites: list[str] = Field(default_factory=lambda: ["+"], min_length=1)

    @field_validator("servers")
    @classmethod
    def _host_port(cls, v: list[str]) -> list[str]:
        for s in v:
            host, _, port = s.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{s!r} is not host:port")
        return v

    @field_validator("sites")
    @classmethod
    def _sites(cls, v: list[str]) -> list[str]:
        import re

        for s in v:
            if s != "+" and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", s):
                raise ValueError(f"{s!r} is not a site id (or '+')")
        return v


class FleetDatabase(Strict):
    dsn: str = Field(
        description="libpq connection string without the password, e.g. 'host=db dbname=fleet user=fleet'"
    )
    password_file: Path | None = None
    connect_timeout_s: int = Field(5, ge=1, le=120)


class FleetCollector(Strict):
    id: Id = Field(description="names this collector: its MQTT session and its status topic")
    batch_max: int = Field(500, ge=1, le=10000)
    batch_wait_s: float = Field(0.05, ge=0, le=5)
    status_period_s: float = Field(5.0, ge=0.2, le=300)
    retry_max_s: float = Field(5.0, ge=0.1, le=300, description="longest wait between database retries")


class FleetConfig(Strict):
    collector: FleetCollector
    mqtt: FleetMqtt
    database: FleetDatabase
    base_topic: str = "suitemon"


class FleetConfigError(Exception):
    pass


def load_fleet(path: str | Path) -> FleetConfig:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise FleetConfigError(f"{path}: {e}") from e
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise FleetConfigError(f"{path}:\n  " + "\n  ".join(lines)) from e


def read_secret(path: Path | None) -> str | None:
    return path.read_text().strip() if path is not None else None
