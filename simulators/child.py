"""Server processes a simulator starts (upsd, dummy-ups, snmpd) die with the simulator.

A simulator killed with SIGKILL (a test's teardown, a crash) never runs its stop(); without this
its servers would keep the loopback ports and run on. Linux's parent-death signal ends them:
SIGKILL, because a server frozen on purpose (SIGSTOP, the "stops answering" fault) ignores SIGTERM
until continued.
"""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn for subprocesses: runs in the child between fork and exec."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
