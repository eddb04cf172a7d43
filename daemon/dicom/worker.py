"""Parsing in a separate process, so extraction never competes with receiving for the GIL.

The receiver's pynetdicom threads and the event loop share one interpreter lock; a parse
worker thread would take it for ~0.3 ms per image and slow the scanner's transfer. A
child process (started with "spawn": forking a threaded daemon is unsafe) parses batches
of spool files and returns plain results. If it dies (a crash on some file), the pool is
rebuilt and the batch is parsed again one file at a time; a file that kills the parser a
second time is recorded as unparseable with that reason, and the rest go through.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import tzinfo
from pathlib import Path

import structlog

from suitemon.daemon.dicom.parse import Parsed, Unparseable, parse_file

log = structlog.get_logger("suitemon.dicom")


def parse_batch(paths: list[Path], key: bytes, site_tz: tzinfo) -> list[Parsed | Unparseable]:
    """Runs in the child process."""
    return [parse_file(p, key=key, site_tz=site_tz) for p in paths]


def _ready() -> bool:
    return True


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Child initializer: a daemon killed with SIGKILL must not leave its parser running.

    (The pool's call queue keeps both pipe ends open in the child, so it would never see
    EOF.) Linux delivers SIGKILL when the parent goes; a 1 s watch on the parent pid covers
    the rest, and a parent already gone by now ends the child at once."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    if os.getppid() != parent_pid:
        os._exit(0)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class ParserPool:
    def __init__(self, key: bytes, site_tz: tzinfo):
        self.key = key
        self.site_tz = site_tz
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def warm_up(self) -> None:
        """Start the child now (imports take a few hundred ms), not on the first study."""
        await asyncio.wrap_future(self._executor().submit(_ready))

    async def parse(self, paths: list[Path]) -> list[Parsed | Unparseable]:
        try:
            return await self._run(paths)
        except BrokenProcessPool:
            log.error("DICOM parser process died; parsing this batch one file at a time", files=len(paths))
        out: list[Parsed | Unparseable] = []
        for p in paths:
            try:
                out.extend(await self._run([p]))
            except BrokenProcessPool:
                log.error("DICOM parser process died on a file", file=str(p))
                out.append(Unparseable("the parser process crashed on this file"))
        return out

    async def _run(self, paths: list[Path]) -> list[Parsed | Unparseable]:
        try:
            return await asyncio.wrap_future(
                self._executor().submit(parse_batch, paths, self.key, self.site_tz)
            )
        except BrokenProcessPool:
            self._discard()
            raise

    def _discard(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self, timeout: float = 1.0) -> None:
        """Stop the child within ``timeout`` (killed if it does not go): a stop must never hang."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.join(timeout)
            if p.is_alive():
                log.warning("DICOM parser process did not stop; killed", pid=p.pid)
                p.kill()
                p.join(1.0)
