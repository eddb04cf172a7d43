"""Board logins: sessions behind an HttpOnly, SameSite=Strict cookie, CSRF checks (throttling: ``throttle``).

The password is never checked or stored here: the broker checks it when the board
opens that user's MQTT connection (``userlink.py``). A session is a random id in a
cookie plus a separate random CSRF token that the page sends back in a header; the
cookie alone (what a cross-site request would carry, if SameSite did not stop it)
is never enough to act.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp.web import Request

from suitemon.daemon.board.web import HttpError

COOKIE = "suitemon_board"


@dataclass
class Session:
    sid: str
    login: str
    actor: str
    name: str
    kind: str
    csrf: str
    link: Any
    created: float
    last_seen: float
    commands: int = field(default=0)

    def public(self) -> dict[str, Any]:
        return {
            "user": self.login,
            "actor": self.actor,
            "name": self.name,
            "kind": self.kind,
            "csrf": self.csrf,
        }


class Sessions:
    def __init__(self, scfg, *, clock=time.monotonic):
        self.cfg = scfg
        self.clock = clock
        self.by_id: dict[str, Session] = {}

    # -- cookies ----------------------------------------------------------
    def cookie_for(self, s: Session) -> str:
        secure = "; Secure" if self.cfg.secure_cookie else ""
        return (
            f"{COOKIE}={s.sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(self.cfg.max_age_s)}{secure}"
        )

    def clearing_cookie(self) -> str:
        secure = "; Secure" if self.cfg.secure_cookie else ""
        return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"

    # -- lifecycle --------------------------------------------------------
    def create(self, login: str, actor: str, name: str, kind: str, link: Any) -> Session:
        now = self.clock()
        s = Session(
            secrets.token_urlsafe(32), login, actor, name, kind, secrets.token_urlsafe(32), link, now, now
        )
        self.by_id[s.sid] = s
        return s

    def _idle_limit(self, s: Session) -> float:
        return self.cfg.station_idle_s if s.kind == "station" else self.cfg.idle_s

    def _expired(self, s: Session, now: float) -> bool:
        return now - s.last_seen > self._idle_limit(s) or now - s.created > self.cfg.max_age_s

    def lookup(self, req: Request, *, touch: bool = False) -> Session | None:
        sid = req.cookies.get(COOKIE)
        s = self.by_id.get(sid) if sid else None
        if s is None:
            return None
        now = self.clock()
        if self._expired(s, now):
            return None
        if touch:
            s.last_seen = now
        return s

    def remove(self, s: Session) -> None:
        self.by_id.pop(s.sid, None)

    def expired(self) -> list[Session]:
        """Sessions past their idle or age limit, removed from the table (their links to close)."""
        now = self.clock()
        gone = [s for s in self.by_id.values() if self._expired(s, now)]
        for s in gone:
            self.remove(s)
        return gone

    # -- CSRF and origin ---------------------------------------------------
    @staticmethod
    def check_origin(req: Request) -> None:
        """A state-changing request must come from our own page."""
        site = req.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise HttpError(403, "cross-site request refused")
        origin = req.headers.get("origin")
        if origin is not None:
            host = req.headers.get("host", "")
            if origin == "null" or urlsplit(origin).netloc != host:
                raise HttpError(403, "cross-origin request refused")

    def require(self, req: Request) -> Session:
        """The session of a state-changing request, with its CSRF token checked."""
        self.check_origin(req)
        s = self.lookup(req, touch=False)
        if s is None:
            raise HttpError(401, "log in first (or your session has ended)")
        token = req.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(token.encode("utf-8", "replace"), s.csrf.encode()):
            raise HttpError(403, "missing or wrong CSRF token: reload the page")
        s.last_seen = self.clock()
        return s
