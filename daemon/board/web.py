"""The board's HTTP side on aiohttp: errors as JSON, security headers, the Host allow-list.

aiohttp parses HTTP (a maintained parser replaces the hand-written one: the board is the
only web-facing process). What stays ours is policy, as middlewares:

* every refusal is a JSON ``{"ok": false, "error": ...}`` with a 4xx status, and an
  unexpected failure is a bare 500 without a traceback (the traceback goes to the log);
* a request whose Host is not this board's is refused (DNS rebinding: a page on
  ``evil.example`` whose name now resolves to the board would otherwise be same-origin);
* only HTTP/1.x; bodies are JSON, small, and must arrive in time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = structlog.get_logger("suitemon.board.http")

MAX_BODY_BYTES = 16 * 1024
BODY_TIMEOUT_S = 10.0
MAX_JSON_DEPTH = 16

SECURITY_HEADERS = {
    # Everything comes from the board itself: no CDN, no inline script, nothing framed.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(obj, separators=(",", ":")).encode(),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def error_response(status: int, message: str) -> web.Response:
    return json_response({"ok": False, "error": message}, status)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, stopping early: a deep body is refused, not walked."""
    if limit < 0:
        return 1
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


def _text_ok(value: Any) -> bool:
    """Every string in the body is sendable UTF-8 (JSON allows lone surrogates; paho and logs do not)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return True
        except UnicodeEncodeError:
            return False
    if isinstance(value, dict):
        return all(_text_ok(k) and _text_ok(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_text_ok(v) for v in value)
    return True


async def json_body(request: web.Request) -> dict[str, Any]:
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        # A cross-site form cannot send application/json without a CORS preflight we never grant.
        raise HttpError(415, "send application/json")
    try:
        raw = await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
    except TimeoutError:
        raise HttpError(408, "the body did not arrive in time") from None
    try:
        data = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "body is not JSON") from None
    except RecursionError:  # "[[[[..." in 16 KB is deeper than the parser's recursion limit
        raise HttpError(400, "body is nested too deeply") from None
    if not isinstance(data, dict):
        raise HttpError(400, "body must be a JSON object")
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise HttpError(400, "body is nested too deeply")
    if not _text_ok(data):
        raise HttpError(400, "body holds text that is not valid UTF-8")
    return data


def host_name(header: str) -> str | None:
    """The name part of a Host header ('[::1]:8480' -> '::1'), lower case; None if malformed."""
    h = header.strip().lower()
    if not h:
        return None
    if h.startswith("["):
        end = h.find("]")
        rest = h[end + 1 :]
        if end < 0 or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        return h[1:end]
    name, _, port = h.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class HostPolicy:
    """Which Host headers the board answers.

    An IP literal is always allowed: a browser sends one only when the user typed that
    address, never for a page served under another name, so it cannot carry a rebinding
    attack. Names must be on the list (``localhost``, this machine's names, and the
    configured ``allowed_hosts``).
    """

    def __init__(self, names: Iterable[str]):
        self.names = {n.strip().lower().rstrip(".") for n in names if n and n.strip()}

    def allows(self, header: str | None) -> bool:
        name = host_name(header) if header is not None else None
        return name is not None and (_is_ip(name) or name in self.names)


def _middlewares(hosts: HostPolicy) -> list:
    @web.middleware
    async def policy(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        try:
            if request.version[0] != 1:
                raise HttpError(505, "HTTP/1.x only")
            host = request.headers.get("Host")
            if host is None:
                raise HttpError(400, "a Host header is required")
            if not hosts.allows(host):
                log.warning(
                    "request for a foreign host refused",
                    host=host[:100],
                    peer=request.remote,
                    path=request.path[:200],
                )
                raise HttpError(421, "this board does not serve that host name")
            if (request.content_length or 0) > MAX_BODY_BYTES:  # before reading a byte of it
                raise HttpError(413, "body too large")
            resp = await handler(request)
        except HttpError as err:
            resp = error_response(err.status, err.message)
        except web.HTTPException as err:  # aiohttp's own: 404, 405, 413 ...
            if err.status < 400:
                raise
            resp = error_response(err.status, err.reason)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            log.exception("request handler failed", method=request.method, path=request.path[:200])
            resp = error_response(500, "internal error")
        if resp.status >= 400:
            log.info(
                "http request refused",
                method=request.method,
                path=request.path[:200],
                status=resp.status,
                peer=request.remote,
            )
        else:
            log.debug(
                "http",
                method=request.method,
                path=request.path[:200],
                status=resp.status,
                peer=request.remote,
                ms=round((time.monotonic() - started) * 1000, 1),
            )
        return resp

    return [policy]


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
    response.headers["Server"] = "suitemon-board"  # not aiohttp's name and version


def make_app(routes: dict[tuple[str, str], Handler], hosts: HostPolicy) -> web.Application:
    """An explicit route table: (method, path) -> handler; nothing else is served."""
    app = web.Application(middlewares=_middlewares(hosts), client_max_size=MAX_BODY_BYTES)
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    app.on_response_prepare.append(_security_headers)
    return app


class ParserLog:
    """aiohttp's server logger: a malformed request is one log line, not a traceback."""

    def exception(self, msg: str, *args: Any, exc_info: Any = None, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            log.info(
                "malformed http request refused",
                error=type(exc).__name__,
                detail=str(getattr(exc, "message", exc))[:200],
            )
        else:  # not the client's fault: a bug, logged with its traceback (never sent to the client)
            log.error("http server error", error=repr(exc)[:300], exc_info=exc)

    def error(self, msg: str, *args: Any, **kw: Any) -> None:
        log.error("http server error", detail=(msg % args if args else msg)[:300])

    def warning(self, msg: str, *args: Any, **kw: Any) -> None:
        log.warning("http server warning", detail=(msg % args if args else msg)[:300])

    def info(self, msg: str, *args: Any, **kw: Any) -> None:
        pass

    def debug(self, msg: str, *args: Any, **kw: Any) -> None:
        pass
