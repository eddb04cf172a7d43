"""The spool: every received instance is a file before the scanner hears "success".

Layout under the spool dir::

    incoming/      received, not yet part of a completed study (kept across restarts)
    processed/     kept ``keep_processed_s`` after their study completed, then purged
    unparseable/   files that could not be used, each with ``<name>.reason.json``

A file is written under a temporary dot-name and renamed when complete, so a crash
never leaves a half file that looks whole; dot-files found at start are the remains of
interrupted writes whose sender got no success (it still has the instance) and are
removed. ``fsync`` decides which files are flushed to the disk before success is
answered (see docs/dicom.md): "all" (default), "reports" (structured reports: the dose
facts themselves) or "none".

Called from pynetdicom's association threads (``store``) and from the service's file thread
(``finish``/``reject``); it keeps no shared mutable state beyond an atomic counter.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from suitemon.daemon.dicom import classes as dicom_classes


class SpoolError(OSError):
    """The instance could not be stored; the sender is told 0xA700 (out of resources)."""


class SpoolFull(SpoolError):
    pass


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr in (b"UI", b"OB") else b" "
    if vr == b"OB":
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def file_meta_bytes(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, 'DICM' and the file meta group: the same bytes as pynetdicom's
    ``event.encoded_dataset()`` prefix, without building a pydicom dataset per instance."""
    body = b"".join(
        (
            _element(2, 0x0001, b"OB", b"\x00\x01"),
            _element(2, 0x0002, b"UI", sop_class.encode("ascii")),
            _element(2, 0x0003, b"UI", sop_instance.encode("ascii")),
            _element(2, 0x0010, b"UI", transfer_syntax.encode("ascii")),
            _element(2, 0x0012, b"UI", str(PYNETDICOM_IMPLEMENTATION_UID).encode("ascii")),
            _element(2, 0x0013, b"SH", PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")),
        )
    )
    return b"\x00" * 128 + b"DICM" + _element(2, 0x0000, b"UL", struct.pack("<I", len(body))) + body


@dataclass(frozen=True)
class Recovered:
    files: list[Path]
    partial_removed: int


class Spool:
    def __init__(self, root: Path, *, fsync: str = "all", min_free_bytes: int = 0):
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.processed = self.root / "processed"
        self.unparseable = self.root / "unparseable"
        for d in (self.incoming, self.processed, self.unparseable):
            d.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.min_free_bytes = min_free_bytes
        self._seq = itertools.count(1)

    # -- receiving (association threads) ------------------------------------------------
    def free_bytes(self) -> int:
        st = os.statvfs(self.incoming)
        return st.f_bavail * st.f_frsize

    def store(self, sop_class: str, sop_instance: str, transfer_syntax: str, dataset) -> Path:
        """Write one instance (file meta + the encoded dataset as received). Raises SpoolError."""
        view = memoryview(dataset.getbuffer()) if hasattr(dataset, "getbuffer") else memoryview(dataset)
        try:
            size = len(view) + 400
            if self.min_free_bytes:
                free = self.free_bytes()
                if free - size < self.min_free_bytes:
                    raise SpoolFull(
                        errno.ENOSPC,
                        f"only {free / 1e6:.0f} MB free on the spool disk; "
                        f"{self.min_free_bytes / 1e6:.0f} MB are kept free for the journal",
                    )
            name = f"{time.time_ns():020d}-{next(self._seq):07d}.dcm"
            tmp = self.incoming / f".{name}.part"
            final = self.incoming / name
            flush = self.fsync == "all" or (self.fsync == "reports" and dicom_classes.is_sr(sop_class))
            head = file_meta_bytes(sop_class, sop_instance, transfer_syntax)
            try:
                self._write(tmp, (head, view), flush)
                os.rename(tmp, final)
                if flush:
                    self._fsync_dir(self.incoming)
            except OSError as err:
                _unlink_quietly(tmp)
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise SpoolFull(err.errno, f"spool disk full: {err.strerror}") from err
                raise SpoolError(err.errno, f"spool write failed: {err.strerror or err}") from err
            return final
        finally:
            view.release()

    def _write(self, path: Path, chunks, flush: bool) -> None:
        """The file-write seam: create, write every chunk, optionally fsync, close."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            for chunk in chunks:
                mv = memoryview(chunk)
                while mv:
                    n = os.write(fd, mv)
                    mv = mv[n:]
            if flush:
                os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _fsync_dir(d: Path) -> None:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- after processing (file thread) ---------------------------------------------------
    def finish(self, paths: list[Path], keep_s: float) -> int:
        """A completed study's files: deleted, or kept in processed/ for ``keep_s`` seconds."""
        done = 0
        for p in paths:
            try:
                if keep_s > 0:
                    os.rename(p, self.processed / p.name)
                else:
                    os.unlink(p)
                done += 1
            except FileNotFoundError:
                pass
        return done

    def reject(self, path: Path, reason: str, details: dict) -> Path:
        """Move an unusable file aside, with the reason next to it; it is never deleted by suitemon."""
        dest = self.unparseable / path.name
        os.rename(path, dest)
        sidecar = self.unparseable / f"{path.name}.reason.json"
        sidecar.write_text(
            json.dumps(
                {"reason": reason, "moved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **details},
                indent=2,
            )
            + "\n"
        )
        return dest

    def purge_processed(self, keep_s: float, now: float | None = None) -> int:
        now = time.time() if now is None else now
        n = 0
        for p in self.processed.glob("*.dcm"):
            try:
                if now - p.stat().st_mtime > keep_s:
                    p.unlink()
                    n += 1
            except FileNotFoundError:
                pass
        return n

    # -- start ----------------------------------------------------------------------------
    def recover(self) -> Recovered:
        """Files left by a previous run, oldest first; interrupted writes removed."""
        partial = 0
        for p in self.incoming.glob(".*.part"):
            _unlink_quietly(p)
            partial += 1
        files = sorted(p for p in self.incoming.glob("*.dcm") if not p.name.startswith("."))
        return Recovered(files, partial)


def _unlink_quietly(p: Path) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass
