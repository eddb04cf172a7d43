"""The push hub: every browser gets a snapshot on connect, then the sections that changed.

Each client has a bounded queue written by one task; a client that cannot keep up
is dropped (its browser reconnects and gets a fresh snapshot) so one slow phone never
delays the wall screen. A ping every ``PING_S`` lets the page notice a dead stream
that TCP has not reported (its watchdog raises the banner after a few missed pings).

Streams without a login have their own small cap, so anonymous viewers (or anyone
who can reach the port) cannot take the places of logged-in stations. A logged-in
stream belongs to its session and ends when the session does (logout, idle, age).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("suitemon.board.sse")

PING_S = 1.0
QUEUE_LIMIT = 128
_END = b""  # queued by drop(): the pump stops and the handler returns, closing the response


def frame(event: str, data: Any) -> bytes:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    # JSON never contains a raw newline, so one data line is a complete SSE message.
    return f"event: {event}\ndata: {body}\n\n".encode()


class Client:
    def __init__(
        self, send: Callable[[bytes], Awaitable[None]], peer: str | None, session_id: str | None = None
    ):
        self.send = send
        self.peer = peer
        self.session_id = session_id
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)

    @property
    def anonymous(self) -> bool:
        return self.session_id is None

    def drop(self) -> None:
        while True:  # make room for the end marker: whatever is queued will not be read
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        self.queue.put_nowait(_END)

    def offer(self, data: bytes) -> bool:
        try:
            self.queue.put_nowait(data)
            return True
        except asyncio.QueueFull:
            return False

    async def pump(self) -> None:
        while (data := await self.queue.get()) is not _END:
            await self.send(data)


class Hub:
    def __init__(self, max_clients: int, max_anonymous: int):
        self.max_clients = max_clients
        self.max_anonymous = max_anonymous
        self.clients: set[Client] = set()

    def count(self, anonymous: bool) -> int:
        return sum(1 for c in self.clients if c.anonymous == anonymous)

    def refusal(self, anonymous: bool) -> str | None:
        """Why a new stream cannot be admitted now, or None."""
        if anonymous and self.count(True) >= self.max_anonymous:
            return "too many anonymous viewers: log in, or close another board page"
        if not anonymous and self.count(False) >= self.max_clients:
            return "too many board pages are open"
        return None

    async def serve(self, client: Client, first: bytes) -> None:
        """Run one client's stream until it goes away or is dropped."""
        self.clients.add(client)
        log.info("browser connected", peer=client.peer, clients=len(self.clients), anonymous=client.anonymous)
        try:
            await client.send(b"retry: 1000\n\n" + first)
            await client.pump()
        except ConnectionError:
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

    def close_session(self, session_id: str) -> int:
        """End the streams of a session that is over; returns how many."""
        mine = [c for c in self.clients if c.session_id == session_id]
        for c in mine:
            self.clients.discard(c)
            c.drop()
        return len(mine)

    def close_all(self) -> None:
        for c in list(self.clients):
            c.drop()
