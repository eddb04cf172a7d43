"""The device end of a simulated serial line: a pty pair whose far end is linked at a stable path."""

from __future__ import annotations

import os
import tty
from pathlib import Path


def open_pty_link(path: Path) -> tuple[int, int]:
    """Open a raw pty pair, link its slave at ``path`` atomically; return (master, slave) fds.

    The daemon opens ``path`` as an ordinary serial port. The link is replaced in one rename, so a
    reader never sees it missing or half made (a cable re-plugged gets a new pty at the same path).
    """
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.ttyname(slave))
    tmp.replace(path)
    return master, slave
