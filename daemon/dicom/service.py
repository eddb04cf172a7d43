"""The ``dicom`` service: receiver threads -> spool -> parse worker -> studies -> checks -> journal.

Everything here runs in the event loop except the receiver (pynetdicom threads, which
reach this object only through ``LoopBridge.post``) and the parser (a child process fed
in batches from an asyncio queue, see dicom_worker.py). Spool files stay until their study's summary is durable in
the journal, so a crash mid-study loses nothing: the files are parsed again at start.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from suitemon.daemon.alarms import Condition
from suitemon.daemon.dicom.config import DicomConfig
from suitemon.daemon.dicom.doses import DoseBook, register_dose_record
from suitemon.daemon.dicom.parse import Parsed, Unparseable
from suitemon.daemon.dicom.rejections import Rejections
from suitemon.daemon.dicom.scp import Receiver
from suitemon.daemon.dicom.spool import Spool
from suitemon.daemon.dicom.studies import Findings, Study, StudyBook, evaluate, summary
from suitemon.daemon.dicom.values import utc_iso
from suitemon.daemon.dicom.worker import ParserPool
from suitemon.daemon.pseudonym import load_or_create_key
from suitemon.daemon.tasks import TaskSet
from suitemon.daemon.threads import LoopBridge

log = structlog.get_logger("suitemon.dicom")

BATCH = 64
DRAIN_S = 0.02
RETRY_BIND_S = 10.0
PURGE_EVERY_S = 60.0


@dataclass
class Item:
    path: Path
    assoc: int | None
    wall: float
    mono: float
    calling_ae: str | None


@dataclass
class AssocState:
    calling_ae: str
    address: str
    instances: int = 0
    failures: int = 0
    open: bool = True


class _Sink:
    """The receiver's reports, posted into the loop; never blocks a pynetdicom thread.

    Stored-instance reports are coalesced: they wait in a deque and the loop drains them at
    most every DRAIN_S. Waking the loop once per instance costs about a millisecond of CPU
    per instance in GIL hand-offs, which the scanner would feel as a slower receiver.
    """

    def __init__(self, bridge: LoopBridge, svc: DicomService):
        self.bridge, self.svc = bridge, svc
        self._spooled: deque = deque()
        self._drain_posted = False

    def _post(self, fn, *args) -> None:
        # Earlier instance reports are handled first, so the loop sees events in their real order.
        self.bridge.post(self._in_order, fn, args)

    def _in_order(self, fn, args) -> None:
        self.drain()
        fn(*args)

    def opened(self, assoc, calling_ae, address):
        self._post(self.svc._on_opened, assoc, calling_ae, address)

    def rejected(self, calling_ae, address, reason, category):
        self._post(self.svc._on_rejected, calling_ae, address, reason, category)

    def spooled(self, assoc, path, sop_class, wall, mono):
        self._spooled.append((assoc, path, sop_class, wall, mono))
        if not self._drain_posted:  # a race here only costs an extra (empty) drain
            self._drain_posted = True
            self.bridge.post(self._later)

    def _later(self) -> None:  # in the loop
        self.svc.loop.call_later(DRAIN_S, self.drain)

    def drain(self) -> None:  # in the loop
        self._drain_posted = False
        while self._spooled:
            self.svc._on_spooled(*self._spooled.popleft())

    def store_failed(self, assoc, sop_class, reason, full):
        self._post(self.svc._on_store_failed, assoc, sop_class, reason, full)

    def echoed(self, assoc):
        self._post(self.svc._on_echo, assoc)

    def closed(self, assoc, how):
        # After the drain, so the association's instances are queued before it counts as ended.
        self._post(self.svc._on_closed, assoc, how)


def study_ref(study_uid: str) -> str:
    """A short stable key for alarm ids (MQTT topic segments)."""
    return "s" + hashlib.sha256(study_uid.encode()).hexdigest()[:10]


class DicomService:
    def __init__(self, ctx):
        self.ctx = ctx
        self.cfg: DicomConfig = ctx.cfg.dicom
        state = Path(ctx.cfg.state.dir)
        self.spool_dir = self.cfg.spool_dir or state / "dicom-spool"
        self.key_file = self.cfg.pseudonym_key_file or state / "dicom-pseudonym.key"
        self.site_tz = ZoneInfo(ctx.cfg.site.timezone)
        self.book = StudyBook()
        self.doses = DoseBook(self.cfg.dispense_window_h)
        self.assocs: dict[int, AssocState] = {}
        self.tasks = TaskSet()
        self.spool: Spool | None = None
        self.receiver: Receiver | None = None
        self.key = b""
        self._parsing = 0
        self._spool_fault_open = False
        self.rejections = Rejections(lambda data: ctx.recorder.record("dicom.association_rejected", data))
        register_dose_record(ctx)
        ctx.recorder.subscribe(self._on_event)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dicom-files")  # spool file moves, purges
        self.doses.load(self.ctx.recorder.journal)
        try:
            self.spool = Spool(
                self.spool_dir, fsync=self.cfg.fsync, min_free_bytes=int(self.cfg.min_free_mb * 1e6)
            )
            self.key = load_or_create_key(self.key_file)
        except (OSError, ValueError) as err:
            self._receiver_down(f"cannot prepare the spool or the pseudonym key: {err}")
            return
        rec = self.spool.recover()
        now = time.time()
        for p in rec.files:
            self.queue.put_nowait(Item(p, None, now, time.monotonic(), None))
        if rec.files or rec.partial_removed:
            self.ctx.recorder.record(
                "dicom.spool_recovered", {"files": len(rec.files), "partial_removed": rec.partial_removed}
            )
            log.info(
                "spool files from a previous run queued",
                files=len(rec.files),
                partial_removed=rec.partial_removed,
            )
        self.sink = _Sink(LoopBridge(loop), self)
        self.receiver = Receiver(self.cfg, self.spool, self.sink)
        self.parser = ParserPool(self.key, self.site_tz)
        self.tasks.spawn(self.parser.warm_up(), name="dicom-parser-start")
        self.tasks.spawn(self._worker(), name="dicom-worker")
        self.tasks.spawn(self._ticker(), name="dicom-ticker")
        # First bind before start() returns, so "online" means the scanner can connect.
        if not self._bind():
            self.tasks.spawn(self._rebind(), name="dicom-bind")

    async def stop(self) -> None:
        if self.receiver is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.receiver.stop)
        await self.tasks.cancel_all()
        self.rejections.flush()  # counted refusals not journaled yet
        if hasattr(self, "pool"):
            self.pool.shutdown(wait=True, cancel_futures=True)
        if getattr(self, "parser", None) is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.parser.close)

    def _bind(self) -> bool:
        try:
            self.receiver.start()
        except OSError as err:
            self._receiver_down(f"cannot listen on {self.cfg.bind}:{self.cfg.port}: {err.strerror or err}")
            return False
        self.ctx.engine.apply(Condition("dicom.receiver_down", "dicom.receiver_down", False))
        return True

    async def _rebind(self) -> None:
        """The port was taken: keep trying (the daemon stays up; the alarm says why DICOM is not)."""
        while True:
            await asyncio.sleep(RETRY_BIND_S)
            if self._bind():
                return

    def _receiver_down(self, reason: str) -> None:
        log.error("DICOM receiver down", reason=reason)
        self.ctx.engine.apply(
            Condition(
                "dicom.receiver_down",
                "dicom.receiver_down",
                True,
                priority="high",
                kind="technical",
                source="dicom",
                location=self.cfg.location,
                message=f"The scanner cannot send to suitemon: {reason}. Dose reports are not checked.",
                details={"reason": reason},
            )
        )

    # -- receiver reports (in the loop) -------------------------------------------------------------
    def _on_opened(self, assoc: int, calling_ae: str, address: str) -> None:
        self.assocs[assoc] = AssocState(calling_ae, address)
        self.ctx.metrics.inc("dicom.associations.accepted")
        log.info("association accepted", assoc=assoc, calling_ae=calling_ae, address=address)

    def _on_rejected(self, calling_ae: str | None, address: str, reason: str, category: str) -> None:
        self.ctx.metrics.inc("dicom.associations.rejected")
        first = self.rejections.add(calling_ae, address, reason, category)
        (log.warning if first else log.debug)(
            "association rejected", calling_ae=calling_ae, address=address, reason=reason, journaled=first
        )

    def _on_spooled(self, assoc: int, path: Path, sop_class: str, wall: float, mono: float) -> None:
        st = self.assocs.get(assoc)
        if st is not None:
            st.instances += 1
        self.ctx.metrics.inc("dicom.instances.received")
        self.queue.put_nowait(Item(path, assoc, wall, mono, st.calling_ae if st else None))
        if self._spool_fault_open:
            self._spool_fault_open = False  # writes work again; the latched alarm waits for a person
            self.ctx.engine.apply(Condition("dicom.spool_fault", "dicom.spool_fault", False))

    def _on_store_failed(self, assoc: int, sop_class: str, reason: str, full: bool) -> None:
        st = self.assocs.get(assoc)
        self.ctx.metrics.inc("dicom.store.failed")
        first = st is None or st.failures == 0
        if st is not None:
            st.failures += 1
        if first:
            self.ctx.recorder.record(
                "dicom.store_failed",
                {
                    "calling_ae": st.calling_ae if st else None,
                    "sop_class": sop_class,
                    "reason": reason,
                    "status": "0xA700",
                    "disk_full": full,
                },
            )
        log.error("instance refused: spool write failed", reason=reason, sop_class=sop_class)
        self._spool_fault_open = True
        free = None
        try:
            free = round(self.spool.free_bytes() / 1e6, 1) if self.spool else None
        except OSError:
            pass
        self.ctx.engine.apply(
            Condition(
                "dicom.spool_fault",
                "dicom.spool_fault",
                True,
                priority="high",
                kind="technical",
                latching=True,
                source="dicom",
                location=self.cfg.location,
                message=(
                    f"suitemon refused an instance from the scanner (0xA700 out of resources): {reason}. "
                    "The scanner keeps it; resend once the spool disk has room."
                ),
                details={
                    "reason": reason,
                    "disk_full": full,
                    "free_mb": free,
                    "spool_dir": str(self.spool_dir),
                },
            )
        )

    def _on_echo(self, assoc: int) -> None:
        self.ctx.metrics.inc("dicom.echo")

    def _on_closed(self, assoc: int, how: str) -> None:
        st = self.assocs.pop(assoc, None)
        if st is None:
            return  # rejected before it was accepted: already recorded
        st.open = False
        log.info("association ended", assoc=assoc, how=how, instances=st.instances, failures=st.failures)
        if st.failures:
            self.ctx.recorder.record(
                "dicom.association_ended",
                {"calling_ae": st.calling_ae, "how": how, "instances": st.instances, "refused": st.failures},
            )

    # -- parsing ------------------------------------------------------------------------------------
    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._parsing = len(batch)
            try:
                parsed = await self.parser.parse([item.path for item in batch])
                results = await loop.run_in_executor(self.pool, self._set_aside, batch, parsed)
                for item, (result, moved) in zip(batch, results, strict=True):
                    self._apply(item, result, moved)
            except Exception:
                log.exception("DICOM worker failed on a batch; files stay in the spool for the next start")
            finally:
                self._parsing = 0

    def _set_aside(self, batch: list[Item], parsed: list) -> list[tuple[Any, Path | None]]:
        """Move unparseable files to unparseable/ with their reason (file thread)."""
        out = []
        for item, result in zip(batch, parsed, strict=True):
            moved = None
            if isinstance(result, Unparseable):
                ident = result.ident
                try:
                    moved = self.spool.reject(
                        item.path,
                        result.reason,
                        {
                            "received_at": utc_iso_ts(item.wall),
                            "calling_ae": item.calling_ae,
                            "sop_class": ident.sop_class if ident else None,
                            "study_uid": ident.study_uid if ident else None,
                        },
                    )
                except OSError as err:
                    log.error("cannot move an unparseable file aside", path=str(item.path), error=str(err))
            out.append((result, moved))
        return out

    def _apply(self, item: Item, result: Parsed | Unparseable, moved: Path | None) -> None:
        if isinstance(result, Parsed):
            self.ctx.metrics.inc("dicom.instances.parsed")
            for why in result.unreadable():
                # The instance is kept with its other values; this one is named in the study's summary.
                self.ctx.metrics.inc("dicom.values.unreadable")
                log.warning("unreadable value in a DICOM instance", kind=result.kind, reason=why)
            self.book.get(result.ident.study_uid).add(result, item.path, item.assoc, item.wall, item.mono)
            return
        ident = result.ident
        self.ctx.metrics.inc("dicom.instances.unparseable")
        log.warning("unparseable DICOM instance", reason=result.reason, file=str(moved or item.path))
        self.ctx.recorder.record(
            "dicom.unparseable",
            {
                "reason": result.reason,
                "file": (moved or item.path).name,
                "kept_in": str(moved.parent) if moved else None,
                "calling_ae": item.calling_ae,
                "sop_class": ident.sop_class if ident else None,
                "study_uid": ident.study_uid if ident else None,
                "accession": ident.accession if ident else None,
                "patient_ref": ident.patient_ref if ident else None,
            },
        )
        if ident is not None and ident.study_uid:
            self.book.get(ident.study_uid).add_unparseable(
                ident, result.reason, item.assoc, item.wall, item.mono
            )

    @property
    def backlog(self) -> int:
        return self.queue.qsize() + self._parsing

    # -- study completion ------------------------------------------------------------------------
    async def _ticker(self) -> None:
        period = min(1.0, max(0.05, self.cfg.study_idle_s / 4))
        last_purge = 0.0
        while True:
            await asyncio.sleep(period)
            self.rejections.tick()
            open_assocs = {k for k, s in self.assocs.items() if s.open}
            for study in self.book.ready(time.monotonic(), self.cfg.study_idle_s, open_assocs, self.backlog):
                self._complete(study)
            if self.cfg.keep_processed_s > 0 and time.monotonic() - last_purge > PURGE_EVERY_S:
                last_purge = time.monotonic()
                await asyncio.get_running_loop().run_in_executor(
                    self.pool, self.spool.purge_processed, self.cfg.keep_processed_s
                )

    def _complete(self, study: Study, *, first_time: bool = True) -> None:
        study.revision += 1
        # Injection side first: a header start dated by its series can be days off (long-lived tracers).
        around = study.injection_anchor() or _dt(
            study.first_received if study.first_received else time.time()
        )
        dispensed = self.doses.pick(study.accession, study.patient_ref, around)
        findings = evaluate(study, dispensed, self.cfg)
        study.activity_status = findings.activity.status
        data = summary(study, dispensed, findings, time.time())
        ev = self.ctx.recorder.record("dicom.dose_summary", data)
        self._alarms(study, data, findings)
        if findings.start_time.status == "mismatch":
            self.ctx.recorder.record(
                "dicom.start_time_mismatch",
                {
                    "study_uid": study.uid,
                    "accession": study.accession,
                    "patient_ref": study.patient_ref,
                    **data["checks"]["start_time"],
                    "note": "header and dose report disagree; both are kept, neither is chosen",
                },
            )
        # Last, so that everything about the study is on record when the room is freed.
        if first_time:
            self.ctx.recorder.record(
                "dicom.study_complete",
                {
                    "study_uid": study.uid,
                    "accession": study.accession,
                    "patient_ref": study.patient_ref,
                    "room": data["room"],
                    "instances": study.instances,
                    "unparseable": study.unparseable,
                    "first_received_at": data["first_received_at"],
                    "last_received_at": data["last_received_at"],
                    "revision": study.revision,
                },
            )
            self.ctx.metrics.inc("dicom.studies.completed")
        files = list(study.files)
        self.book.retire(study)
        log.info(
            "study complete",
            study=study_ref(study.uid),
            instances=study.instances,
            ct=findings.ct.status,
            activity=findings.activity.status,
            revision=study.revision,
        )
        if files:
            self._dispose(files, ev.seq)

    def _alarms(self, study: Study, data: dict, f: Findings) -> None:
        ref = study_ref(study.uid)
        who = f"accession {study.accession}" if study.accession else f"patient {study.patient_ref or '?'}"
        base = {"study_uid": study.uid, "accession": study.accession, "patient_ref": study.patient_ref}
        if f.ct.status == "exceeded":
            parts = [
                f"{x['quantity'].split('_')[0].upper()} {x['value']:g} > {x['level']:g} ({x['level_source']})"
                for x in f.ct.exceeded
            ]
            self._finding(
                Condition(
                    f"dicom.ct_dose.{ref}",
                    "dicom.ct_reference_exceeded",
                    True,
                    priority="medium",
                    kind="clinical",
                    latching=True,
                    source="dicom",
                    location=self.cfg.location,
                    message=f"CT dose above the reference level for '{f.ct.protocol}' ({who}): "
                    + "; ".join(parts),
                    details={**base, "protocol": f.ct.protocol, "exceeded": f.ct.exceeded},
                )
            )
        if f.activity.status == "mismatch":
            a = f.activity
            dev = f"{a.deviation_pct:+.1f} %" if a.deviation_pct is not None else "no activity expected"
            self._finding(
                Condition(
                    f"dicom.activity.{ref}",
                    "dicom.activity_mismatch",
                    True,
                    priority="medium",
                    kind="clinical",
                    latching=True,
                    source="dicom",
                    location=self.cfg.location,
                    message=(
                        f"PET header activity {a.header_mbq:.1f} MBq differs from the dispensed dose "
                        f"({a.expected_mbq:.1f} MBq decay-corrected to the header's injection time): {dev}, "
                        f"tolerance {a.tolerance_pct:g} % ({who}). Every SUV of this study uses the header value."
                    ),
                    details={**base, **data["checks"]["activity"], "record_id": a.record_id},
                )
            )

        flag = f.header.activity_flag if f.header is not None else None
        if flag:
            self._finding(
                Condition(
                    f"dicom.header_activity.{ref}",
                    "dicom.header_activity_implausible",
                    True,
                    priority="medium",
                    kind="clinical",
                    latching=True,
                    source="dicom",
                    location=self.cfg.location,
                    message=(
                        f"PET header activity cannot be trusted ({who}): {flag}. Every SUV of this study "
                        f"uses the header value."
                    ),
                    details={
                        **base,
                        "activity_flag": flag,
                        "unit_in_header": f.header.activity_unit,
                        "activity_mbq": f.header.activity_mbq,
                    },
                )
            )

    def _finding(self, c: Condition) -> None:
        # A finding is a past fact: raised, then its condition ends; latching keeps it until a person resets it.
        open_ = self.ctx.engine.alarms.get(c.alarm_id)
        if open_ is not None and open_.details == dict(c.details):
            # The same finding in a revised summary (a late record): not a new condition, so an ack
            # given to it stands (a changed finding re-annunciates: docs/decisions.md).
            return
        self.ctx.engine.apply(c)
        self.ctx.engine.apply(replace(c, present=False))

    def _dispose(self, files: list[Path], seq: int) -> None:
        """Remove a completed study's files once its summary is durable (never before)."""
        if seq == 0:
            # Recorded while the journal refused writes: keep the files; the next start parses them
            # again and records the summary then (a duplicate summary is harmless, a lost one is not).
            log.warning("summary not durable yet (journal fault): spool files kept", files=len(files))
            return
        if self.ctx.recorder.committed_seq >= seq:
            self.pool.submit(self.spool.finish, files, self.cfg.keep_processed_s)
        else:
            self.loop.call_later(0.2, self._dispose, files, seq)

    # -- dispensing records -----------------------------------------------------------------------
    def _on_event(self, ev) -> None:
        if ev.type != "dose.administered":
            return
        d = self.doses.add_event(ev)
        if d is not None:
            self.loop.call_soon(self._late_record, d)

    def _late_record(self, d) -> None:
        """A dispensing record that arrives after its study completed revises that study's summary."""
        for study in list(self.book.recent.values()):
            if study.activity_status != "no_dispense_record":
                continue
            around = study.injection_anchor() or _dt(study.first_received or time.time())
            if self.doses.pick(study.accession, study.patient_ref, around) is d:
                self.book.recent.pop(study.uid, None)
                self._complete(study, first_time=False)


def _dt(t: float):
    from datetime import datetime

    return datetime.fromtimestamp(t, UTC)


def utc_iso_ts(t: float) -> str:
    return utc_iso(_dt(t))


def factory(ctx) -> DicomService:
    return DicomService(ctx)
