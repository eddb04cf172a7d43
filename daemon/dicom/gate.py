"""The receiver's door: connections that have not asked for an association yet are few and short-lived.

pynetdicom counts every connected socket against ``maximum_associations`` from the moment
it is accepted, and waits ``acse_timeout`` (30 s) for the A-ASSOCIATE-RQ; five idle sockets
locked the scanner out for half a minute. Here a connection is *pending* until its
A-ASSOCIATE-RQ arrives; pending connections are limited per address and in total (refused
at accept, before a thread is started), they get ``request_timeout_s`` to ask, and they do
not count against the scanner's ``max_associations`` (the receiver keeps its own count of
requested associations, see scp.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pynetdicom.transport import ThreadedAssociationServer

Key = tuple[str, int]


class Gate:
    def __init__(self, per_address: int, total: int):
        self.per_address, self.total = per_address, total
        self._lock = threading.Lock()
        self._pending: dict[Key, str] = {}
        self._by_address: dict[str, int] = {}

    def admit(self, key: Key) -> str | None:
        """Count a new connection as pending; the reason to refuse it, if any."""
        address = key[0]
        with self._lock:
            if self._by_address.get(address, 0) >= self.per_address:
                return f"more than {self.per_address} connections from {address} waiting to associate"
            if len(self._pending) >= self.total:
                return f"more than {self.total} connections waiting to associate"
            self._pending[key] = address
            self._by_address[address] = self._by_address.get(address, 0) + 1
            return None

    def release(self, key: Key) -> bool:
        """The connection asked (or ended). True if it was still pending."""
        with self._lock:
            address = self._pending.pop(key, None)
            if address is None:
                return False
            left = self._by_address[address] - 1
            if left:
                self._by_address[address] = left
            else:
                del self._by_address[address]
            return True

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


class GatedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with ``verify_request`` (socketserver's hook) asking the gate."""

    gate: Gate
    on_refused: Callable[[str, str], None]  # (address, reason); must return at once

    def verify_request(self, request, client_address) -> bool:
        key = (client_address[0], client_address[1])
        reason = self.gate.admit(key)
        if reason is None:
            return True
        self.on_refused(client_address[0], reason)
        return False  # socketserver closes the socket; no thread, no association

    def handle_error(self, request, client_address) -> None:
        # Normally released at the request or the close event (scp.py); a handler that failed
        # before the association started reaches neither.
        self.gate.release((client_address[0], client_address[1]))
        super().handle_error(request, client_address)
