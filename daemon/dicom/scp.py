"""The Storage + Verification SCP (pynetdicom), on the fast path.

pynetdicom runs every association in its own threads. The handlers here never touch
core state and never wait on the event loop: they check the allow-list, write the
instance to the spool, answer, and tell the service what happened through ``sink``,
whose methods only ``LoopBridge.post`` into the loop (non-blocking).

Rejections happen at association time (A-ASSOCIATE-RJ), before any data is accepted:
an unknown calling AE title is "calling AE title not recognised"; a known title from
an address it is not allowed to use is "no reason given" (an attacker learns nothing
about which titles exist); a wrong called AE title is "called AE title not recognised".

Before that, the gate (gate.py) keeps idle connections from using up the scanner's slots:
a connection has ``request_timeout_s`` to send its A-ASSOCIATE-RQ, few may wait per
address, and only requested associations count against ``max_associations``.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Protocol

import structlog
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from suitemon.daemon.dicom import classes as dicom_classes
from suitemon.daemon.dicom import reactor as dicom_reactor
from suitemon.daemon.dicom.config import DicomConfig
from suitemon.daemon.dicom.gate import Gate, GatedServer
from suitemon.daemon.dicom.spool import Spool, SpoolError, SpoolFull

log = structlog.get_logger("suitemon.dicom")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
PROCESSING_FAILURE = 0x0110


class Sink(Protocol):
    """What the receiver reports; every method must return at once (it runs in pynetdicom threads)."""

    def opened(self, assoc: int, calling_ae: str, address: str) -> None: ...
    def rejected(self, calling_ae: str | None, address: str, reason: str, category: str) -> None: ...
    def spooled(self, assoc: int, path, sop_class: str, wall: float, mono: float) -> None: ...
    def store_failed(self, assoc: int, sop_class: str, reason: str, full: bool) -> None: ...
    def echoed(self, assoc: int) -> None: ...
    def closed(self, assoc: int, how: str) -> None: ...


class Receiver:
    def __init__(self, cfg: DicomConfig, spool: Spool, sink: Sink):
        self.cfg = cfg
        self.spool = spool
        self.sink = sink
        self.server: ThreadedAssociationServer | None = None
        self._ids = itertools.count(1)
        self._keys: dict[object, int] = {}
        self._lock = threading.Lock()
        self._ended: dict[int, str] = {}
        self.gate = Gate(cfg.max_pending_per_address, cfg.max_pending)
        self._conns: dict[object, tuple[str, int]] = {}
        self._granted: set[object] = set()

    def build_ae(self) -> AE:
        c = self.cfg
        ae = AE(ae_title=c.ae_title)
        ae.maximum_pdu_size = c.max_pdu_bytes
        # pynetdicom counts every socket, pending ones too: its limit leaves room for the gate's
        # pending connections; the scanner's limit is enforced in _requested on real requests.
        ae.maximum_associations = c.max_associations + c.max_pending
        ae.acse_timeout = c.acse_timeout_s
        ae.dimse_timeout = c.dimse_timeout_s
        ae.network_timeout = c.network_timeout_s
        ae.require_called_aet = False  # checked in _requested, so the rejection is recorded
        for uid in dicom_classes.STORAGE_CLASSES:
            ae.add_supported_context(uid, c.transfer_syntaxes)
        ae.add_supported_context(dicom_classes.VERIFICATION, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        return ae

    def start(self) -> None:
        """Bind and serve in pynetdicom's threads. Raises OSError if the port cannot be bound."""
        handlers = [
            (evt.EVT_CONN_OPEN, self._conn_open),
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_ACCEPTED, self._accepted),
            (evt.EVT_REJECTED, self._rejected_by_pynetdicom),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_C_ECHO, self._echo),
            (evt.EVT_RELEASED, self._released),
            (evt.EVT_ABORTED, self._aborted),
            (evt.EVT_CONN_CLOSE, self._conn_close),
        ]
        ae = self.build_ae()
        server = ae.make_server(
            (self.cfg.bind, self.cfg.port), evt_handlers=handlers, server_class=GatedServer
        )
        server.gate = self.gate
        server.on_refused = lambda address, reason: self.sink.rejected(None, address, reason, "pending")
        # As AE.start_server does (3.0): the AE knows its servers, so server.shutdown() can forget it.
        ae._servers.append(server)
        threading.Thread(target=server.serve_forever, name="dicom-acceptor", daemon=True).start()
        self.server = server
        log.info(
            "DICOM receiver listening", ae_title=self.cfg.ae_title, bind=self.cfg.bind, port=self.cfg.port
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def port(self) -> int | None:
        return self.server.server_address[1] if self.server is not None else None

    # -- handlers (pynetdicom threads) ----------------------------------------------------------
    def _key(self, assoc) -> int:
        with self._lock:
            k = self._keys.get(assoc)
            if k is None:
                k = self._keys[assoc] = next(self._ids)
            return k

    def _conn_open(self, event) -> None:
        self._key(event.assoc)
        dicom_reactor.tune(event.assoc)
        with self._lock:
            self._conns[event.assoc] = (event.address[0], event.address[1])
        # Until the A-ASSOCIATE-RQ arrives, pynetdicom's ARTIM timer runs with the ACSE timeout.
        event.assoc.acse_timeout = self.cfg.request_timeout_s

    def _requested(self, event) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        calling = _text(rq.calling_ae_title)
        called = _text(rq.called_ae_title)
        address = assoc.requestor.address
        with self._lock:
            conn = self._conns.get(assoc)
        if conn is not None:
            self.gate.release(conn)
        assoc.acse_timeout = self.cfg.acse_timeout_s
        reason, diagnostic, category = None, 0x01, "address"
        if called != self.cfg.ae_title:
            reason, diagnostic, category = (
                f"called AE title '{called}' is not ours ('{self.cfg.ae_title}')",
                0x07,
                "called_ae",
            )
        elif not any(p.ae_title == calling for p in self.cfg.allow):
            reason, diagnostic, category = (
                f"calling AE title '{calling}' is not on the allow-list",
                0x03,
                "calling_ae",
            )
        elif not self.cfg.allowed(calling, address):
            reason = f"calling AE title '{calling}' is not allowed from {address}"
        if reason is not None:
            assoc.acse.send_reject(0x01, 0x01, diagnostic)  # rejected-permanent, by the service user
            assoc.kill()
            self.sink.rejected(calling, address, reason, category)
            return
        with self._lock:
            full = len(self._granted) >= self.cfg.max_associations
            if not full:
                self._granted.add(assoc)
        if full:
            assoc.acse.send_reject(
                0x02, 0x03, 0x02
            )  # rejected-transient, provider (presentation), local limit
            assoc.kill()
            self.sink.rejected(
                calling, address, f"more than {self.cfg.max_associations} simultaneous associations", "limit"
            )

    def _accepted(self, event) -> None:
        rq = event.assoc.requestor
        self.sink.opened(self._key(event.assoc), _text(rq.primitive.calling_ae_title), rq.address)

    def _rejected_by_pynetdicom(self, event) -> None:
        # Rejections pynetdicom decides itself (too many associations): ours are reported above.
        prim = event.assoc.acceptor.primitive
        if (
            prim is not None
            and getattr(prim, "diagnostic", None) == 0x02
            and getattr(prim, "result_source", None) == 0x03
        ):
            rq = event.assoc.requestor
            self.sink.rejected(
                _text(rq.primitive.calling_ae_title),
                rq.address,
                f"more than {self.cfg.max_associations} simultaneous associations",
                "limit",
            )

    def _store(self, event) -> int:
        req = event.request
        key = self._key(event.assoc)
        sop_class = str(req.AffectedSOPClassUID)
        try:
            path = self.spool.store(
                sop_class, str(req.AffectedSOPInstanceUID), str(event.context.transfer_syntax), req.DataSet
            )
        except SpoolFull as err:
            self.sink.store_failed(key, sop_class, str(err.strerror or err), True)
            return OUT_OF_RESOURCES
        except (SpoolError, OSError) as err:
            self.sink.store_failed(key, sop_class, str(err.strerror or err), False)
            return OUT_OF_RESOURCES
        except Exception as err:  # a bug here must cost one instance, never the receiver
            log.exception("C-STORE handler failed")
            self.sink.store_failed(key, sop_class, f"internal error: {type(err).__name__}: {err}", False)
            return PROCESSING_FAILURE
        self.sink.spooled(key, path, sop_class, time.time(), time.monotonic())
        return SUCCESS

    def _echo(self, event) -> int:
        self.sink.echoed(self._key(event.assoc))
        return SUCCESS

    def _released(self, event) -> None:
        self._ended[self._key(event.assoc)] = "released"

    def _aborted(self, event) -> None:
        self._ended[self._key(event.assoc)] = "aborted"

    def _conn_close(self, event) -> None:
        with self._lock:
            conn = self._conns.pop(event.assoc, None)
            self._granted.discard(event.assoc)
        if conn is not None and self.gate.release(conn):
            self.sink.rejected(
                None,
                conn[0],
                f"closed without an association request (limit {self.cfg.request_timeout_s:g} s)",
                "no_request",
            )
        with self._lock:
            key = self._keys.pop(event.assoc, None)
        if key is None:
            return
        self.sink.closed(key, self._ended.pop(key, "connection closed"))


def _text(v) -> str:
    if isinstance(v, bytes):
        v = v.decode("ascii", "replace")
    return str(v).strip()
