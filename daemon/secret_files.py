"""Start-up check of the files that hold secrets (MQTT passwords, TLS private keys).

A password every local user can read is a password every local user can use to ack
alarms as the daemon, so ``suitemon run`` refuses to start (exit 2, like any other
configuration error, before a port is opened) when a secret file is

* missing, not a regular file, unreadable by us, or empty;
* readable or writable by "other" users (any of the ``o`` bits);
* writable by its group.

Group *read* is allowed on purpose: ``root:suitemon 0640`` lets root own the secret
while the service reads it. With systemd's ``LoadCredential=`` (the shipped unit) the
file under ``/run/credentials/`` is 0400 and owned by the service user.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from suitemon.daemon.config import ConfigIssue, SuiteConfig


def check_secret_file(key: str, path: Path) -> list[ConfigIssue]:
    """The problems with one secret file (empty when it is safe): what ``suitemon run`` refuses."""
    if not path.is_absolute():
        # Under systemd the working directory is /, in a terminal it is anywhere.
        return [ConfigIssue(key, f"{path} must be an absolute path")]
    try:
        st = path.stat()
    except OSError as err:
        return [ConfigIssue(key, f"cannot read {path}: {err.strerror}")]
    if not stat.S_ISREG(st.st_mode):
        return [ConfigIssue(key, f"{path} is not a regular file")]
    mode = stat.S_IMODE(st.st_mode)
    fix = (
        f"(mode {mode:04o}); run `chmod 0600 {path}` (or 0640 with the group of the service), "
        "or hand it over with LoadCredential="
    )
    if mode & stat.S_IRWXO:
        return [ConfigIssue(key, f"{path} is accessible to every user on this machine {fix}")]
    if mode & stat.S_IWGRP:
        return [ConfigIssue(key, f"{path} is writable by its group {fix}")]
    if not os.access(path, os.R_OK):
        return [ConfigIssue(key, f"{path} is not readable by this user (uid {os.getuid()})")]
    if st.st_size == 0:
        return [ConfigIssue(key, f"{path} is empty")]
    return []


SECRET_SUFFIXES = ("password_file", "key_file")


def secret_paths(node: Any, path: str = "") -> Iterator[tuple[str, Path]]:
    """Every configured file whose key names a secret (``*password_file``, ``*key_file``),
    in any section, so a feature's own credentials (a board's observer account) are held to
    the same rule without the core knowing the feature."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(node, BaseModel):
        items = ((name, getattr(node, name)) for name in type(node).model_fields)
    elif isinstance(node, dict):
        items = node.items()
    else:
        return
    for key, value in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and key.endswith(SECRET_SUFFIXES) and isinstance(value, (str, Path)):
            yield here, Path(value)
        else:
            yield from secret_paths(value, here)


def secret_file_issues(cfg: SuiteConfig) -> list[ConfigIssue]:
    """Every problem with the configured secret files; empty when all are safe."""
    issues: list[ConfigIssue] = []
    if cfg.mqtt.password_file is not None and not cfg.mqtt.username:
        issues.append(ConfigIssue("mqtt.username", "password_file is set but username is not"))
    for key, path in secret_paths(cfg):
        issues += check_secret_file(key, path)
    return issues


__all__ = ["SECRET_SUFFIXES", "check_secret_file", "secret_file_issues", "secret_paths"]


def write_new_secret(path: Path, data: bytes) -> None:
    """Create ``path`` owner-only (0600) with ``data``, durably; never overwrite an existing key.

    O_EXCL: two processes racing to create a key cannot both win and leave different keys.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
