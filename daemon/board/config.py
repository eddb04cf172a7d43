"""The ``[board]`` config section: where the board listens, who may log in, how long sessions last."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from suitemon.drivers.config import Id, Strict


class BoardUser(Strict):
    """Someone (a nurse) or something (a station) allowed to act from the board.

    The password is not here: the broker checks it. ``mqtt_username`` is the broker
    account the login maps to and the actor the journal records (default: the key).
    """

    name: str
    kind: Literal["nurse", "station", "engineer"] = "nurse"
    mqtt_username: Id | None = None


class SessionConfig(Strict):
    idle_s: float = Field(
        900, ge=30, le=86400, description="a nurse's session ends after this much inactivity"
    )
    station_idle_s: float = Field(43200, ge=30, le=7 * 86400, description="the same for station logins")
    max_age_s: float = Field(43200, ge=60, le=7 * 86400, description="no session lives longer than this")
    secure_cookie: bool = Field(
        False, description="set the Secure flag (the board is served over HTTPS by a proxy)"
    )


class BoardConfig(Strict):
    bind: str = Field("127.0.0.1", description="address to listen on; loopback unless a site opens it")
    port: int = Field(8480, ge=1, le=65535)
    board_id: Id = Field("board", description="names this board's availability topic board/<id>/status")
    title: str | None = None
    anonymous_view: bool = Field(True, description="show the suite without a login (actions always need one)")
    users: dict[Id, BoardUser] = Field(default_factory=dict)
    session: SessionConfig = SessionConfig()
    bell_test_verb: str = Field(
        "bell_test",
        pattern=r"^[a-z][a-z0-9_-]{0,40}$",
        description="command verb that starts a room's weekly bell test",
    )
    status_stale_s: float = Field(
        12.0,
        ge=6,
        le=300,
        description="daemon status older than this counts as lost (it is refreshed every 5 s)",
    )
    command_timeout_s: float = Field(
        5.0, gt=0, le=60, description="how long a command waits for the daemon's reply"
    )
    observer_username: str | None = Field(None, description="broker account the board reads with")
    observer_password_file: Path | None = None
    max_clients: int = Field(64, ge=1, le=10000, description="live event streams of logged-in users at once")
    max_anonymous_clients: int = Field(
        8,
        ge=0,
        le=10000,
        description="live event streams without a login (a separate, small cap: anonymous "
        "viewers cannot take the places of logged-in stations)",
    )
    max_connections: int = Field(
        256,
        ge=4,
        le=100000,
        description="open TCP connections at once; past it a connection gets 503 and is closed",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="host names browsers may use for the board, besides localhost, this "
        "machine's names and IP addresses (a DNS-rebinding defence)",
    )
    idle_connection_s: float = Field(
        15.0, ge=1, le=600, description="a connection without a request in progress is closed after this long"
    )

    def actor_of(self, login: str) -> str:
        user = self.users[login]
        return user.mqtt_username or login
