"""The ``[metrics]`` config section: where the Prometheus endpoint listens. Absent: no endpoint."""

from __future__ import annotations

from pydantic import Field

from suitemon.drivers.config import Strict


class MetricsConfig(Strict):
    bind: str = Field("127.0.0.1", description="address to listen on; loopback unless the site opens it")
    port: int = Field(9480, ge=1, le=65535, description="TCP port of GET /metrics")
