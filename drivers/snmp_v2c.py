"""SNMP v2c GET, GETNEXT, GETBULK and SET over UDP: a small BER codec (X.690 subset, RFC 3416 PDUs).

Why not pysnmp here: its pyasn1 codec costs about 5 ms CPU for one GET of a dozen scalars,
and issue 16 allows 2 ms a poll. v2c has no security layer, so a message is one community
string and one PDU; the codec below covers exactly the types an agent may answer with
(RFC 2578 application types, RFC 3416 exceptions) and refuses everything else with
:class:`SnmpDecodeError`. v3 (USM authPriv) stays on pysnmp: see docs/decisions.md.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import structlog

from suitemon.drivers.base import CommError, DeviceException, DeviceTimeout, FrameError

GET, GETNEXT, RESPONSE, SET, GETBULK = 0xA0, 0xA1, 0xA2, 0xA3, 0xA5
INTEGER, OCTET_STRING, NULL, OID_TAG, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
IP_ADDRESS, COUNTER32, GAUGE32, TIMETICKS, OPAQUE, COUNTER64 = 0x40, 0x41, 0x42, 0x43, 0x44, 0x46
NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW = 0x80, 0x81, 0x82
NUMBERS = {INTEGER, COUNTER32, GAUGE32, TIMETICKS, COUNTER64}
OCTETS = {OCTET_STRING, IP_ADDRESS, OPAQUE}
MISSING = {NO_SUCH_OBJECT, NO_SUCH_INSTANCE}
MAX_SUBIDS = 128  # RFC 2578 section 3.5
MAX_INT_OCTETS = 9  # Counter64 with its leading zero
ERROR_STATUS = (  # RFC 3416 section 3, PDUs error-status
    "noError tooBig noSuchName badValue readOnly genErr noAccess wrongType wrongLength "
    "wrongEncoding wrongValue noCreation inconsistentValue resourceUnavailable commitFailed "
    "undoFailed authorizationError notWritable inconsistentName"
).split()

log = structlog.get_logger("suitemon.ups.snmp")

Value = int | bytes | str | None  # str: an OBJECT IDENTIFIER value, dotted


class SnmpDecodeError(ValueError):
    """A datagram that is not a well-formed SNMP v2c response."""


class EndOfMib:
    """endOfMibView: a GETNEXT ran off the end of what the agent serves."""

    def __repr__(self) -> str:
        return "endOfMibView"


END = EndOfMib()


@dataclass(frozen=True)
class Response:
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[str, Value | EndOfMib]]


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def encode_int(value: int) -> bytes:
    return _tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def encode_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.strip(".").split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise ValueError(f"not an object identifier: {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(OID_TAG, bytes(out))


def encode_request(
    pdu: int,
    community: bytes,
    request_id: int,
    binds: list[tuple[str, int | None]],
    max_repetitions: int = 0,
) -> bytes:
    """One v2c message: version 1 (= v2c), the community, a PDU of OID/value pairs (None: NULL).

    GETBULK puts non-repeaters (0 here) and max-repetitions where other PDUs carry error-status and
    error-index (RFC 3416 section 3)."""
    vbl = b"".join(
        _tlv(SEQUENCE, encode_oid(oid) + (b"\x05\x00" if value is None else encode_int(value)))
        for oid, value in binds
    )
    body = encode_int(request_id) + b"\x02\x01\x00" + encode_int(max_repetitions) + _tlv(SEQUENCE, vbl)
    return _tlv(SEQUENCE, b"\x02\x01\x01" + _tlv(OCTET_STRING, community) + _tlv(pdu, body))


def _header(data: bytes, at: int, end: int) -> tuple[int, int, int]:
    """Tag, start and end of the value of the TLV at ``at``, checked against ``end``."""
    if at + 2 > end:
        raise SnmpDecodeError(f"truncated at byte {at}")
    tag, first = data[at], data[at + 1]
    at += 2
    if first & 0x80:
        octets = first & 0x7F
        if octets == 0 or octets > 4 or at + octets > end:
            raise SnmpDecodeError(f"bad length form at byte {at - 1}")
        length = int.from_bytes(data[at : at + octets], "big")
        at += octets
    else:
        length = first
    if at + length > end:
        raise SnmpDecodeError(f"value of tag 0x{tag:02x} runs past its container ({length} bytes)")
    return tag, at, at + length


def _expect(data: bytes, at: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = _header(data, at, end)
    if got != tag:
        raise SnmpDecodeError(f"expected tag 0x{tag:02x} at byte {at}, found 0x{got:02x}")
    return start, stop


def _int(data: bytes, start: int, stop: int) -> int:
    if not 0 < stop - start <= MAX_INT_OCTETS:
        raise SnmpDecodeError(f"integer of {stop - start} octets")
    return int.from_bytes(data[start:stop], "big", signed=True)


def _oid(data: bytes, start: int, stop: int) -> str:
    if start == stop or data[stop - 1] & 0x80:
        raise SnmpDecodeError("empty or truncated object identifier")
    arcs: list[int] = []
    arc = 0
    for byte in data[start:stop]:
        arc = (arc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(arc)
            arc = 0
    if len(arcs) + 1 > MAX_SUBIDS:
        raise SnmpDecodeError(f"object identifier of {len(arcs) + 1} sub-identifiers")
    first = arcs[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return ".".join(map(str, head + arcs[1:]))


def _value(data: bytes, at: int, end: int) -> tuple[Value | EndOfMib, int]:
    tag, start, stop = _header(data, at, end)
    if tag in NUMBERS:
        return _int(data, start, stop), stop
    if tag in OCTETS:
        return bytes(data[start:stop]), stop
    if tag == OID_TAG:
        return _oid(data, start, stop), stop
    if tag in MISSING or tag == NULL:
        return None, stop
    if tag == END_OF_MIB_VIEW:
        return END, stop
    raise SnmpDecodeError(f"unknown value tag 0x{tag:02x}")


def decode_response(data: bytes, community: bytes) -> Response:
    """A v2c Response-PDU, or :class:`SnmpDecodeError` saying what is wrong with it."""
    start, end = _expect(data, 0, len(data), SEQUENCE)
    if end != len(data):
        raise SnmpDecodeError(f"{len(data) - end} bytes after the message")
    start, stop = _expect(data, start, end, INTEGER)
    if _int(data, start, stop) != 1:
        raise SnmpDecodeError("not an SNMP v2c message")
    start, stop = _expect(data, stop, end, OCTET_STRING)
    if data[start:stop] != community:
        raise SnmpDecodeError("answer carries another community")
    at, end = _expect(data, stop, end, RESPONSE)
    fields = []
    for _ in range(3):
        start, at = _expect(data, at, end, INTEGER)
        fields.append(_int(data, start, at))
    at, stop = _expect(data, at, end, SEQUENCE)
    if stop != end:
        raise SnmpDecodeError("bytes after the variable bindings")
    binds: list[tuple[str, Value | EndOfMib]] = []
    while at < stop:
        start, at = _expect(data, at, stop, SEQUENCE)
        o_start, o_stop = _expect(data, start, at, OID_TAG)
        value, v_stop = _value(data, o_stop, at)
        if v_stop != at:
            raise SnmpDecodeError("bytes after a value in a variable binding")
        binds.append((_oid(data, o_start, o_stop), value))
    return Response(fields[0], fields[1], fields[2], binds)


def _arcs(dotted: str) -> tuple[int, ...]:
    return tuple(int(a) for a in dotted.split("."))


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: V2cClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        self.client._received(data)

    def error_received(self, exc: Exception) -> None:
        self.client._failed(CommError(f"SNMP agent {self.client.where}: {exc}"))


class V2cClient:
    """One agent, one request in flight, no retries (the device runner owns retrying)."""

    def __init__(
        self,
        host: str,
        port: int,
        community: str,
        timeout_s: float,
        counters: dict[str, int] | None = None,
    ) -> None:
        self.where = f"{host}:{port}"
        self.community = community.encode()
        self.timeout_s = timeout_s
        self.counters = counters if counters is not None else {}  # the driver's, so they show with its own
        self._addr = (host, port)
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: tuple[int, asyncio.Future[Response]] | None = None
        self._lock = asyncio.Lock()
        self._next_id = random.randrange(1, 2**30)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), remote_addr=self._addr
            )
        except OSError as err:
            raise CommError(f"SNMP agent {self.where}: {err}") from err

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._failed(CommError(f"SNMP agent {self.where}: closed"))

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _received(self, data: bytes) -> None:
        if self._pending is None:
            self._count("late_answers")  # answered after we gave up: harmless, but counted
            return
        request_id, future = self._pending
        try:
            response = decode_response(data, self.community)
        except SnmpDecodeError as err:
            self._count("bad_datagrams")
            log.warning("snmp_bad_datagram", agent=self.where, error=str(err), size=len(data))
            self._failed(FrameError(f"SNMP agent {self.where}: {err}"))
            return
        if response.request_id != request_id:
            self._count("late_answers")  # an earlier, timed-out request's answer
            return
        if not future.done():
            future.set_result(response)

    def _failed(self, err: Exception) -> None:
        if self._pending is not None and not self._pending[1].done():
            self._pending[1].set_exception(err)

    async def _exchange(
        self, pdu: int, binds: list[tuple[str, int | None]], what: str, max_repetitions: int = 0
    ) -> Response:
        if self._transport is None:
            raise CommError(f"SNMP agent {self.where}: not open")
        async with self._lock:
            self._next_id = self._next_id % (2**31 - 1) + 1
            future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            self._pending = (self._next_id, future)
            self._count("requests")
            try:
                wire = encode_request(pdu, self.community, self._next_id, binds, max_repetitions)
                self._transport.sendto(wire)
                response = await asyncio.wait_for(future, self.timeout_s)
            except TimeoutError:
                raise DeviceTimeout(
                    f"SNMP agent {self.where}: no answer to {what} within {self.timeout_s:g} s"
                ) from None
            finally:
                self._pending = None
        if response.error_status:
            status = response.error_status
            name = ERROR_STATUS[status] if status < len(ERROR_STATUS) else f"error {status}"
            raise DeviceException(
                f"SNMP agent refused {what}: {name} (variable {response.error_index})", status
            )
        if pdu != GETBULK and len(response.varbinds) != len(binds):
            raise FrameError(f"{what}: {len(response.varbinds)} variables answered, {len(binds)} asked")
        return response

    async def get(self, oids: list[str]) -> dict[str, Value]:
        """Values by OID (None: noSuchObject/noSuchInstance), in one GET."""
        response = await self._exchange(GET, [(o, None) for o in oids], "GET")
        out: dict[str, Value] = {}
        for asked, (oid, value) in zip(oids, response.varbinds, strict=True):
            if _arcs(oid) != _arcs(asked) or isinstance(value, EndOfMib):
                raise FrameError(f"GET {asked}: the agent answered for {oid} ({value!r})")
            out[asked] = value
        return out

    async def get_next(self, oid: str) -> tuple[str, Value | EndOfMib]:
        """The next object after ``oid``; the agent must move forwards (RFC 3416 4.2.2)."""
        ((got, value),) = (await self._exchange(GETNEXT, [(oid, None)], "GETNEXT")).varbinds
        if not isinstance(value, EndOfMib) and _arcs(got) <= _arcs(oid):
            raise FrameError(f"GETNEXT {oid}: the agent answered {got}, not a later object")
        return got, value

    async def walk(self, prefix: str, max_rows: int, rows_per_request: int = 8) -> list[tuple[str, Value]]:
        """The objects under ``prefix``, by GETBULK (RFC 3416 4.2.3): one request for a small table.

        More than ``max_rows`` is a FrameError (an agent that never leaves the table)."""
        rows: list[tuple[str, Value]] = []
        at, inside = prefix, _arcs(prefix)
        while True:
            binds = (await self._exchange(GETBULK, [(at, None)], f"GETBULK {at}", rows_per_request)).varbinds
            if not binds:
                raise FrameError(f"GETBULK {at}: the agent answered no variable")
            for oid, value in binds:
                arcs = _arcs(oid)
                if isinstance(value, EndOfMib) or arcs[: len(inside)] != inside:
                    return rows
                if arcs <= _arcs(at):
                    raise FrameError(f"GETBULK {at}: the agent answered {oid}, not a later object")
                rows.append((oid, value))
                at = oid
                if len(rows) > max_rows:
                    raise FrameError(f"walk of {prefix} returned more than {max_rows} rows")

    async def set_int(self, oid: str, value: int) -> None:
        await self._exchange(SET, [(oid, value)], f"SET {oid}")
