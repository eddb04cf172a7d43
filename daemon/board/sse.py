"""The push hub: every browser gets a snapshot on connect, then the sections that changed.

Each client has a bounded queue written by one task; a client that cannot keep up
is dropped (its browser reconnects and gets a fresh snapshot) so one slow phone never
delays the wall screen. A ping every ``PING_S`` lets the page notice a dead stream
that TCP has not reported (its watchdog raises the banner after a few missed pings).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog

from suitemon.daemon.board.http import Stream

log = structlog.get_logger("suitemon.board.sse")

PING_S = 1.0
QUEUE_LIMIT = 128


def frame(event: str, data: Any) -> bytes:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    # JSON never contains a raw newline, so one data line is a complete SSE message.
    return f"event: {event}\ndata: {body}\n\n".encode("utf-8")


class Client:
    def __init__(self, stream: Stream, peer: str):
        self.stream = stream
        self.peer = peer
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self.task: asyncio.Task | None = None

    def drop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def offer(self, data: bytes) -> bool:
        try:
            self.queue.put_nowait(data)
            return True
        except asyncio.QueueFull:
            return False

    async def pump(self) -> None:
        while True:
            await self.stream.send(await self.queue.get())


class Hub:
    def __init__(self, max_clients: int):
        self.max_clients = max_clients
        self.clients: set[Client] = set()

    @property
    def full(self) -> bool:
        return len(self.clients) >= self.max_clients

    async def serve(self, client: Client, first: bytes) -> None:
        """Run one client's stream until it goes away."""
        client.task = asyncio.current_task()
        self.clients.add(client)
        log.info("browser connected", peer=client.peer, clients=len(self.clients))
        try:
            await client.stream.send(b"retry: 1000\n\n" + first)
            await client.pump()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.clients.discard(client)
            log.info("browser disconnected", peer=client.peer, clients=len(self.clients))

    def broadcast(self, data: bytes) -> None:
        for c in list(self.clients):
            if not c.offer(data):
                log.warning("browser too slow; dropping its stream so it reconnects", peer=c.peer)
                self.clients.discard(c)
                c.drop()

    def close_all(self) -> None:
        for c in list(self.clients):
            c.drop()
