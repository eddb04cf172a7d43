"""Store-and-forward: publish committed journal events in order, mark them delivered on PUBACK.

The journal is the queue. At start, everything after the delivery cursor is sent
again (consumers de-duplicate by event_id: at-least-once, never lost). Within one
process each event is handed to paho once; paho re-sends its in-flight QoS 1
messages after a reconnect, in order. A bounded window keeps memory flat during a
long outage: the backlog waits in SQLite, not in RAM.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from suitemon.daemon.contract import Topics, messages_for
from suitemon.daemon.journal import Journal
from suitemon.daemon.mqtt import MqttLink

log = structlog.get_logger("suitemon.outbox")


class Outbox:
    def __init__(self, journal: Journal, topics: Topics, site: str, *, window: int = 100):
        self.journal = journal
        self.topics = topics
        self.site = site
        self.window = window
        self.link: MqttLink | None = None
        self.committed_seq = journal.last_seq
        self.delivered = journal.delivered_upto()
        self._next = self.delivered + 1
        self._inflight: dict[int, int] = {}  # seq -> messages not yet acked
        self._mid_seq: dict[int, int] = {}
        self._acked: set[int] = set()
        self._persist_scheduled = False
        self.published = 0
        # How the delivery mark is made durable: committed here unless the daemon gives the
        # recorder's group commit (Recorder.touch).
        self.request_flush: Callable[[], None] = journal.commit

    @property
    def backlog(self) -> int:
        return self.committed_seq - self.delivered

    def wake(self, committed_seq: int | None = None) -> None:
        if committed_seq is not None:
            self.committed_seq = committed_seq
        self._pump()

    def _pump(self) -> None:
        link = self.link
        if link is None or not link.connected:
            return
        while len(self._inflight) < self.window and self._next <= self.committed_seq:
            room = min(self.window - len(self._inflight), self.committed_seq - self._next + 1)
            events = self.journal.events_after(self._next - 1, limit=room)
            if not events:
                break
            for ev in events:
                if ev.seq > self.committed_seq:
                    return
                msgs = messages_for(ev, self.topics, self.site)
                self._inflight[ev.seq] = len(msgs)
                for m in msgs:
                    self._mid_seq[link.publish(m)] = ev.seq
                self._next = ev.seq + 1
                self.published += 1

    def on_ack(self, mid: int) -> None:
        seq = self._mid_seq.pop(mid, None)
        if seq is None:
            return  # device state, status and replies are not journaled
        left = self._inflight[seq] - 1
        if left:
            self._inflight[seq] = left
            return
        del self._inflight[seq]
        self._acked.add(seq)
        advanced = False
        while self.delivered + 1 in self._acked:
            self._acked.discard(self.delivered + 1)
            self.delivered += 1
            advanced = True
        if advanced:
            self._persist()
        self._pump()

    def _persist(self) -> None:
        # The cursor rides along with the recorder's next group commit; a crash before
        # it only means a few events are sent twice, which consumers already tolerate.
        self.journal.set_delivered(self.delivered)
        self.request_flush()
