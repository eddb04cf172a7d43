"""A small HTTP/1.1 server on asyncio streams: enough for one page, its assets, JSON and SSE.

No framework (the board needs a handful of routes; the standard library's
``http.server`` is thread-based and would be a second concurrency model next to the
asyncio core). Limits are tight on purpose: header and body sizes are capped, only
``Content-Length`` bodies are read, every response closes its connection except the
event stream, and a slow or broken client costs one task, never the loop.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Awaitable, Callable
from urllib.parse import unquote, urlsplit

import structlog

log = structlog.get_logger("suitemon.board.http")

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024
READ_TIMEOUT_S = 10.0

SECURITY_HEADERS = {
    # Everything comes from the board itself: no CDN, no inline script, nothing framed.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: str
    cookies: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            # A cross-site form cannot send application/json without a CORS preflight we never grant.
            raise HttpError(415, "send application/json")
        try:
            data = json.loads(self.body.decode("utf-8")) if self.body else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HttpError(400, "body is not JSON") from None
        if not isinstance(data, dict):
            raise HttpError(400, "body must be a JSON object")
        return data


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> "Response":
        return cls(status, json.dumps(obj, separators=(",", ":")).encode(), "application/json",
                   {"Cache-Control": "no-store"})


class Stream:
    """An open response the handler writes to (Server-Sent Events)."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


Handler = Callable[[Request], Awaitable[Response]]
StreamHandler = Callable[[Request, Stream], Awaitable[None]]


def parse_cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            out[name] = value
    return out


async def read_request(reader: asyncio.StreamReader, peer: str) -> Request:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, "headers too large") from None
    except asyncio.IncompleteReadError as err:
        if not err.partial:
            raise ConnectionResetError("closed before a request") from None
        raise HttpError(400, "incomplete request") from None
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        raise HttpError(400, "bad request line") from None
    if not version.startswith("HTTP/1."):
        raise HttpError(505, "HTTP/1.x only")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise HttpError(400, "bad header line")
        key = name.lower()
        if key in headers and key in ("content-length", "host", "cookie", "transfer-encoding"):
            raise HttpError(400, f"duplicate {key} header")
        headers[key] = value.strip()
    if "transfer-encoding" in headers:
        raise HttpError(411, "chunked bodies are not accepted; send Content-Length")
    body = b""
    if "content-length" in headers:
        try:
            n = int(headers["content-length"])
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if n < 0 or n > MAX_BODY_BYTES:
            raise HttpError(413, "body too large")
        body = await reader.readexactly(n)
    url = urlsplit(target)
    if not url.path.startswith("/"):
        raise HttpError(400, "bad path")
    return Request(method.upper(), unquote(url.path), url.query, headers, body, peer,
                   parse_cookies(headers.get("cookie", "")))


def encode_response(resp: Response) -> bytes:
    reason = HTTPStatus(resp.status).phrase if resp.status in HTTPStatus._value2member_map_ else "Status"
    lines = [f"HTTP/1.1 {resp.status} {reason}",
             f"Content-Type: {resp.content_type}",
             f"Content-Length: {len(resp.body)}",
             "Connection: close"]
    hdrs = {**SECURITY_HEADERS, **resp.headers}
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    lines += [f"Set-Cookie: {c}" for c in resp.cookies]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body


def stream_head(extra: dict[str, str] | None = None) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream; charset=utf-8",
             "Cache-Control: no-store", "Connection: keep-alive", "X-Accel-Buffering: no"]
    lines += [f"{k}: {v}" for k, v in {**SECURITY_HEADERS, **(extra or {})}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HttpServer:
    """Routes are an explicit table: (method, path) -> handler; streams are a second table."""

    def __init__(self, routes: dict[tuple[str, str], Handler], streams: dict[str, StreamHandler],
                 fallback: Handler | None = None, *, on_error: Callable[[Request | None, int], None] | None = None):
        self.routes = routes
        self.streams = streams
        self.fallback = fallback
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEADER_BYTES)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.connections):
            t.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        peer = writer.get_extra_info("peername")
        peer_s = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        req: Request | None = None
        try:
            try:
                req = await asyncio.wait_for(read_request(reader, peer_s), READ_TIMEOUT_S)
                stream = self.streams.get(req.path) if req.method == "GET" else None
                if stream is not None:
                    await stream(req, Stream(writer))
                    return
                resp = await self._dispatch(req)
            except HttpError as err:
                resp = Response.json({"ok": False, "error": err.message}, err.status)
            except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                return
            except Exception:
                log.exception("request handler failed", path=req.path if req else None)
                resp = Response.json({"ok": False, "error": "internal error"}, 500)
            if req is not None:
                log.debug("http", method=req.method, path=req.path, status=resp.status, peer=peer_s)
            elif resp.status >= 400:
                log.info("bad http request refused", status=resp.status, peer=peer_s)
            writer.write(encode_response(resp))
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (asyncio.TimeoutError, ConnectionError, asyncio.CancelledError):
                pass

    async def _dispatch(self, req: Request) -> Response:
        handler = self.routes.get((req.method, req.path))
        if handler is not None:
            return await handler(req)
        if any(path == req.path for _, path in self.routes) or req.path in self.streams:
            raise HttpError(405, "method not allowed")
        if self.fallback is not None and req.method == "GET":
            return await self.fallback(req)
        raise HttpError(404, "not found")
