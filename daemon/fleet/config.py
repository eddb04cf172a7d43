"""The fleet file (``suitemon fleet run -c FLEETFILE``): cluster nodes, credentials, database."""

from __future__ import annotations

import ssl
import tomllib
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import Field, ValidationError, field_validator

from suitemon.drivers.config import Id, Strict


class FleetMqtt(Strict):
    # The collector's status (retained, with a will) goes over MQTT, where the central desks read it.
    # The same account reads the event stream over the native NATS protocol ([stream]).
    servers: list[str] = Field(min_length=1, description="host:port of each cluster node's MQTT listener")
    username: str
    password_file: Path
    ca_file: Path | None = Field(None, description="CA of the cluster's TLS certificates; none = plain TCP")
    keepalive_s: int = Field(10, ge=2, le=600)

    @field_validator("servers")
    @classmethod
    def _host_port(cls, v: list[str]) -> list[str]:
        for s in v:
            host, _, port = s.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{s!r} is not host:port")
        return v


NATS_NAME = r"[A-Za-z0-9_-]{1,64}"


class FleetStream(Strict):
    """The durable pull consumer all collectors share (each message to one of them), on the stream
    where the cluster's MQTT layer keeps QoS 1 messages. docs/fleet.md."""

    servers: list[str] = Field(
        min_length=1, description="each node's native NATS listener, e.g. tls://central-1:4222"
    )
    consumer: str = Field("fleet", pattern=NATS_NAME, description="the durable consumer all collectors share")
    ack_wait_s: float = Field(30, ge=1, le=3600, description="unacknowledged this long: delivered again")
    max_ack_pending: int = Field(20000, ge=1, le=1_000_000)
    # An idle collector's fetch waits this long for events, and once the first has come, for a full
    # batch (nats-py returns early only when the cluster says it has no more): it bounds the lag that
    # adds (measured ~1 s p99 with 1.0 and two collectors at 250 events/s).
    fetch_timeout_s: float = Field(0.1, ge=0.02, le=30)

    @field_validator("servers")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for s in v:
            scheme, sep, rest = s.partition("://")
            if not sep or scheme not in ("nats", "tls") or ":" not in rest:
                raise ValueError(f"{s!r} is not nats://host:port or tls://host:port")
        return v


class FleetDatabase(Strict):
    dsn: str = Field(
        description="libpq connection string without the password, e.g. 'host=db dbname=fleet user=fleet'"
    )
    password_file: Path | None = None
    connect_timeout_s: int = Field(5, ge=1, le=120)


class FleetCollector(Strict):
    id: Id = Field(description="names this collector: its status topic and its NATS connection")
    batch_max: int = Field(500, ge=1, le=10000)
    status_period_s: float = Field(5.0, ge=0.2, le=300)
    retry_max_s: float = Field(5.0, ge=0.1, le=300, description="longest wait between database retries")


class FleetConfig(Strict):
    collector: FleetCollector
    mqtt: FleetMqtt
    stream: FleetStream
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


def central_client(cfg: FleetConfig, client_id: str) -> paho.Client:
    """An MQTT client of the central cluster with the fleet file's account and TLS (the collector's
    status, `fleet setup`'s first hello). The central side, not a site: it does not take the site's
    factory (daemon.mqtt.make_client reads a suite config's [mqtt], which a fleet file has not)."""
    m = cfg.mqtt
    c = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=paho.MQTTv311,
        reconnect_on_failure=False,
    )
    c.username_pw_set(m.username, read_secret(m.password_file))
    if m.ca_file is not None:
        c.tls_set(ca_certs=str(m.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return c
