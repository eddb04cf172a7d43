"""pynetdicom tuned for a synchronous sender (a scanner sends one C-STORE, waits, sends the next).

pynetdicom 3.0's acceptor reactor sleeps 1 ms before every look at its message queue, and
its DUL thread sleeps 1 ms whenever it finds nothing to do. With a sender that waits for
each response, those sleeps add 1-2 ms to every instance (more on a loaded machine, where
a 1 ms sleep overshoots), which alone would put suitemon at 3-5x DCMTK's time.

``Acceptor`` is pynetdicom's own acceptor loop (``Association._run_reactor``, 3.0.4) with one
change: it waits on the DIMSE message queue for up to 1 ms instead of sleeping first, so a
complete message is served at once while the release/abort/timeout checks still run every
millisecond when idle. The DUL's idle sleep is shortened to 0.1 ms. Both touch private
parts of pynetdicom: the version is pinned (< 3.1) and ``tests/test_dicom_receiver.py`` checks
the upstream loop is still the one this copy was made from.
"""

from __future__ import annotations

import logging
import queue

from pynetdicom import evt
from pynetdicom.association import Association

LOGGER = logging.getLogger("pynetdicom.assoc")

DUL_IDLE_SLEEP_S = 0.0001
QUEUE_WAIT_S = 0.001

# sha256 of inspect.getsource(Association._run_reactor) in pynetdicom 3.0.4 (the loop copied below).
UPSTREAM_REACTOR_SHA256 = "f28838c5559e462a563750cfc9f3790027f4bb7e2223baf42c9f5d682c359dee"


class Acceptor(Association):
    def _run_reactor(self) -> None:
        self._is_paused = False
        msgs = self.dimse.msg_queue
        while not self._kill:
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            try:  # the one change: wait for a message instead of sleeping before looking
                context_id, msg = msgs.get(timeout=QUEUE_WAIT_S)
            except queue.Empty:
                context_id, msg = None, None
            if msg:
                self._serve_request(msg, context_id)

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                LOGGER.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                LOGGER.info("Association Aborted")
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                LOGGER.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


def tune(assoc) -> None:
    """Called on EVT_CONN_OPEN, before the association's threads start."""
    if type(assoc) is Association:
        assoc.__class__ = Acceptor
    dul = getattr(assoc, "dul", None)
    if dul is not None and hasattr(dul, "_run_loop_delay"):
        dul._run_loop_delay = DUL_IDLE_SLEEP_S
