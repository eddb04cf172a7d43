"""The metrics service: a prometheus-client HTTP server on ``[metrics] bind:port``.

The server runs in prometheus-client's own thread; a scrape reads the daemon's state
on the event loop through the LoopBridge. A port that cannot be bound does not stop the
safety monitor: it is logged as an error, counted, and retried.
"""

from __future__ import annotations

import asyncio

import structlog
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from suitemon.daemon import __version__
from suitemon.daemon.prometheus.collector import SuiteCollector
from suitemon.daemon.prometheus.snapshot import take
from suitemon.daemon.tasks import TaskSet
from suitemon.daemon.threads import LoopBridge

log = structlog.get_logger("suitemon.metrics")

SCRAPE_TIMEOUT_S = 2.0
RETRY_BIND_S = 30.0


class MetricsService:
    def __init__(self, ctx):
        self.ctx = ctx
        self.cfg = ctx.cfg.metrics
        self.server = None
        self.thread = None
        self.tasks = TaskSet()

    async def start(self) -> None:
        bridge = LoopBridge(asyncio.get_running_loop())
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)  # memory, CPU, open fds of the daemon process
        ctx = self.ctx
        self.registry.register(
            SuiteCollector(
                lambda: bridge.call(lambda: take(ctx, ctx.outbox, __version__), timeout=SCRAPE_TIMEOUT_S)
            )
        )
        if not self._bind():
            self.tasks.spawn(self._retry_bind(), name="metrics-bind")

    def _bind(self) -> bool:
        try:
            self.server, self.thread = start_http_server(
                self.cfg.port, addr=self.cfg.bind, registry=self.registry
            )
        except OSError as err:
            self.ctx.metrics.inc("metrics.bind_failed")
            log.error(
                "metrics endpoint cannot listen; retrying",
                bind=self.cfg.bind,
                port=self.cfg.port,
                error=str(err),
                retry_s=RETRY_BIND_S,
            )
            return False
        log.info(
            "metrics endpoint listening", url=f"http://{self.cfg.bind}:{self.server.server_port}/metrics"
        )
        return True

    async def _retry_bind(self) -> None:
        while True:
            await asyncio.sleep(RETRY_BIND_S)
            if self._bind():
                return

    @property
    def port(self) -> int | None:
        return self.server.server_port if self.server is not None else None

    async def stop(self) -> None:
        await self.tasks.cancel_all(timeout=0.5)
        if self.server is None:
            return
        server, self.server = self.server, None
        # shutdown() waits for serve_forever's next poll (0.5 s); a scrape waiting on the loop
        # is released by the loop itself stopping, so this is bounded.
        await asyncio.to_thread(server.shutdown)
        server.server_close()


def factory(ctx) -> MetricsService:
    return MetricsService(ctx)
