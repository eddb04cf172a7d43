"""The board's listening socket with a cap on open TCP connections.

aiohttp has no connection limit of its own. Without one, a few hundred idle or
half-sent connections hold file descriptors and memory of the one process the nurse
station depends on. Past the cap a new connection gets a short 503 and is closed at
once; connections that never send a request are closed by aiohttp's keep-alive timer,
which starts when the connection opens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiohttp import web

log = structlog.get_logger("suitemon.board.http")

_BUSY_BODY = b'{"ok":false,"error":"too many connections: retry shortly"}'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    b"Connection: close\r\nRetry-After: 5\r\n\r\n" % len(_BUSY_BODY)
) + _BUSY_BODY


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(BUSY)  # type: ignore[attr-defined]
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, with a callback when it ends."""

    def __init__(self, inner: asyncio.Protocol, on_lost: Callable[[], None]):
        self.inner = inner
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.on_lost()


class CappedListener:
    def __init__(self, server: web.Server, max_connections: int):
        self.server = server
        self.max_connections = max_connections
        self.open = 0
        self.refused = 0
        self._srv: asyncio.AbstractServer | None = None

    def _protocol(self) -> asyncio.Protocol:
        if self.open >= self.max_connections:
            self.refused += 1
            # One line per 100 refusals: a flood must not flood the log too.
            if self.refused % 100 == 1:
                log.warning(
                    "board connection refused: at the connection cap",
                    open=self.open,
                    cap=self.max_connections,
                    refused_total=self.refused,
                )
            return _Refuse()
        self.open += 1
        return _Counted(self.server(), self._lost)

    def _lost(self) -> None:
        self.open -= 1

    async def start(self, host: str, port: int) -> None:
        self._srv = await asyncio.get_running_loop().create_server(self._protocol, host, port, backlog=128)

    @property
    def port(self) -> int:
        assert self._srv is not None
        return self._srv.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._srv is not None:
            self._srv.close()
