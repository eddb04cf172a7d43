"""Versioned SQL migrations (migrations/NNN_name.sql), applied once each, in order.

A transaction-scoped advisory lock serialises collectors that start together; each file runs in
the same transaction as the row that records it, so a failed migration leaves nothing half-done.
"""

from __future__ import annotations

import re
from importlib import resources

import structlog

log = structlog.get_logger("suitemon.fleet")

LOCK_KEY = 0x5117E18  # any constant shared by every collector of this schema

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    out = []
    for f in resources.files("suitemon.daemon.fleet").joinpath("migrations").iterdir():
        m = _NAME.match(f.name)
        if m:
            out.append((int(m.group(1)), f.name, f.read_text()))
    out.sort()
    versions = [v for v, *_ in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {[n for _, n, _ in out]}")
    return out


def migrate(conn) -> list[str]:
    """Bring the schema up to date; return the names applied now."""
    applied_now = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS fleet_schema (version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM fleet_schema")}
        for version, name, sql in migrations():
            if version in done:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO fleet_schema (version, name) VALUES (%s, %s)", (version, name))
            applied_now.append(name)
            log.info("migration applied", migration=name)
    return applied_now
