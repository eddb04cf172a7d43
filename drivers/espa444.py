"""ESPA 4.4.4 framing as data: control characters, block layout, BCC, encoder, incremental decoder.

ESPA 4.4.4 (Nov 1984, "Proposal for serial data interface for paging equipment") runs on ISO 1745
basic-mode control: a station bids for the line with addresses and ENQ, the other answers ACK or
NAK, data goes in blocks, EOT ends the exchange. A block is

    SOH <header> STX <id> US <data> RS <id> US <data> ... ETX <BCC>

with the header a function digit (1 = call to pager, 2 = status information, 3 = status request,
4 = call subscriber line) and each record a data identifier (1..8, table ``RECORDS``) followed by its
data. The BCC is the XOR of every character after SOH up to and including ETX (ISO 1155). Sources
and the choices made where they are silent: docs/decisions.md ("ESPA 4.4.4").

Nothing here does I/O or reads a clock, so it is table-tested and fuzzed (tests/test_espa444.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# -- characters (ISO 646 / ISO 1745 names) ------------------------------------------
SOH, STX, ETX, EOT, ENQ, ACK, NAK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x15
RS, US = 0x1E, 0x1F  # record separator between records, unit separator inside one
CONTROL_NAMES = {
    SOH: "SOH",
    STX: "STX",
    ETX: "ETX",
    EOT: "EOT",
    ENQ: "ENQ",
    ACK: "ACK",
    NAK: "NAK",
    RS: "RS",
    US: "US",
}

# Station addresses used as transmission-control prefixes ("1 ENQ"): configurable per site,
# these are the usual ones (control equipment 1, paging system 2).
CONTROL_STATION = "1"
PAGING_SYSTEM = "2"
ADDRESS_CHARS = frozenset(b"0123456789")

# -- block layout -----------------------------------------------------------------------
HEADERS = {
    "1": "call to pager",
    "2": "status information",
    "3": "status request",
    "4": "call subscriber line",
}


@dataclass(frozen=True)
class RecordSpec:
    ident: str
    name: str
    max_len: int
    digits_only: bool


RECORDS: dict[str, RecordSpec] = {
    r.ident: r
    for r in (
        RecordSpec("1", "call address", 16, True),
        RecordSpec("2", "display message", 128, False),
        RecordSpec("3", "beep coding", 1, True),
        RecordSpec("4", "call type", 1, True),
        RecordSpec("5", "number of transmissions", 1, True),
        RecordSpec("6", "priority", 1, True),
        RecordSpec("7", "call status", 1, True),
        RecordSpec("8", "pager status", 1, True),
    )
}
# ISO 646 printable characters: the only ones a record's data may carry.
DATA_CHARS = frozenset(range(0x20, 0x7F))
MAX_BLOCK = 2 + 2 + sum(3 + r.max_len for r in RECORDS.values()) + 2  # SOH hdr STX ... ETX BCC


class EspaError(ValueError):
    """A block or record that ESPA 4.4.4 cannot carry; the message says why."""


@dataclass(frozen=True)
class Block:
    header: str
    records: tuple[tuple[str, str], ...]

    def get(self, ident: str) -> str | None:
        for k, v in self.records:
            if k == ident:
                return v
        return None

    def as_dict(self) -> dict[str, str]:
        return {RECORDS[k].name if k in RECORDS else k: v for k, v in self.records}


def bcc(body: bytes) -> int:
    """Block check character: XOR of the characters after SOH up to and including ETX."""
    x = 0
    for b in body:
        x ^= b
    return x


def check_record(ident: str, data: str) -> None:
    spec = RECORDS.get(ident)
    if spec is None:
        raise EspaError(f"unknown record identifier {ident!r}; known: {', '.join(RECORDS)}")
    if not data:
        raise EspaError(f"record {ident} ({spec.name}) is empty")
    if len(data) > spec.max_len:
        raise EspaError(f"record {ident} ({spec.name}) is {len(data)} characters, at most {spec.max_len}")
    raw = data.encode("ascii", errors="replace")
    if any(c not in DATA_CHARS for c in raw) or not data.isascii():
        raise EspaError(f"record {ident} ({spec.name}) has characters outside ISO 646 printable")
    if spec.digits_only and not data.isdigit():
        raise EspaError(f"record {ident} ({spec.name}) must be digits, got {data!r}")


def encode_block(header: str, records: Iterable[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """A complete block, SOH to BCC. Raises EspaError for anything the protocol cannot carry."""
    if header not in HEADERS:
        raise EspaError(f"unknown header {header!r}; known: {', '.join(HEADERS)}")
    items = list(records.items()) if isinstance(records, Mapping) else list(records)
    if not items:
        raise EspaError("a block needs at least one record")
    seen = set()
    for ident, data in items:
        check_record(ident, data)
        if ident in seen:
            raise EspaError(f"record {ident} appears twice")
        seen.add(ident)
    body = (
        header.encode()
        + bytes([STX])
        + bytes([RS]).join(i.encode() + bytes([US]) + d.encode("ascii") for i, d in items)
        + bytes([ETX])
    )
    return bytes([SOH]) + body + bytes([bcc(body)])


def encode_block_obj(block: Block) -> bytes:
    return encode_block(block.header, block.records)


def select_sequence(own: str = CONTROL_STATION, peer: str = PAGING_SYSTEM) -> bytes:
    """The master's bid: its own address + ENQ, then the selected station's address + ENQ."""
    return own.encode() + bytes([ENQ]) + peer.encode() + bytes([ENQ])


def poll_sequence(peer: str = PAGING_SYSTEM) -> bytes:
    """Ask the paging system for status it holds: EOT (line reset), its address, ENQ."""
    return bytes([EOT]) + peer.encode() + bytes([ENQ])


def call_records(
    address: str, message: str, *, beep: str, call_type: str, transmissions: str, priority: str
) -> list[tuple[str, str]]:
    return [
        ("1", address),
        ("2", message),
        ("3", beep),
        ("4", call_type),
        ("5", transmissions),
        ("6", priority),
    ]


# -- decoding ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Control:
    """A single transmission-control character, with the address prefix that preceded it (if any)."""

    char: int  # ENQ, ACK, NAK or EOT
    address: str = ""

    @property
    def name(self) -> str:
        return CONTROL_NAMES[self.char]


@dataclass(frozen=True)
class BadBlock:
    """A block that arrived whole but failed its check: the receiver answers NAK."""

    reason: str


Item = Block | Control | BadBlock


def parse_body(body: bytes) -> Block:
    """The characters between SOH and ETX -> Block, or EspaError."""
    if STX not in body:
        raise EspaError("no STX after the header")
    head, _, text = body.partition(bytes([STX]))
    header = head.decode("ascii", errors="replace")
    if header not in HEADERS:
        raise EspaError(f"unknown header {header!r}")
    records: list[tuple[str, str]] = []
    seen = set()
    for raw in text.split(bytes([RS])):
        ident_b, sep, data_b = raw.partition(bytes([US]))
        if not sep:
            raise EspaError("record without a unit separator")
        ident = ident_b.decode("ascii", errors="replace")
        data = data_b.decode("ascii", errors="replace")
        check_record(ident, data)
        if ident in seen:
            raise EspaError(f"record {ident} appears twice")
        seen.add(ident)
        records.append((ident, data))
    return Block(header, tuple(records))


_IDLE, _ADDR, _BODY, _BCC = range(4)


@dataclass
class Decoder:
    """Incremental: feed bytes as they arrive, get Blocks, Controls and BadBlocks in order.

    Anything that is neither a control sequence nor a block is garbage: counted and skipped,
    and the decoder is back in step at the next SOH, ENQ/ACK/NAK/EOT or address digit.
    """

    max_block: int = MAX_BLOCK
    counts: Counter[str] = field(default_factory=Counter)
    _state: int = _IDLE
    _addr: str = ""
    _body: bytearray = field(default_factory=bytearray)

    def reset(self) -> None:
        self._state, self._addr, self._body = _IDLE, "", bytearray()

    def _garbage(self, n: int = 1) -> None:
        self.counts["garbage_bytes"] += n

    def feed(self, data: bytes) -> list[Item]:
        out: list[Item] = []
        for b in data:
            self._step(b, out)
        return out

    def _step(self, b: int, out: list[Item]) -> None:
        st = self._state
        if st == _BODY:
            if b == SOH:  # a new block starts: the old one was cut short
                self.counts["bad_blocks"] += 1
                out.append(BadBlock("block cut short by SOH"))
                self._body = bytearray()
                return
            if b in (ENQ, ACK, NAK, EOT) or (b < 0x20 and b not in (STX, ETX, RS, US)) or b >= 0x7F:
                self.counts["bad_blocks"] += 1
                out.append(BadBlock(f"character {b:#04x} inside a block"))
                self.reset()
                if b in (ENQ, ACK, NAK, EOT):
                    self._step(b, out)
                return
            self._body.append(b)
            if b == ETX:
                self._state = _BCC
            elif len(self._body) > self.max_block:
                self.counts["bad_blocks"] += 1
                out.append(BadBlock(f"block longer than {self.max_block} characters"))
                self.reset()
            return
        if st == _BCC:
            body = bytes(self._body)
            self.reset()
            if b != bcc(body):
                self.counts["bad_bcc"] += 1
                out.append(BadBlock(f"BCC {b:#04x}, expected {bcc(body):#04x}"))
                return
            try:
                out.append(parse_body(body[:-1]))
                self.counts["blocks"] += 1
            except EspaError as err:
                self.counts["bad_blocks"] += 1
                out.append(BadBlock(str(err)))
            return
        # idle or after an address digit
        if b == SOH:
            if self._addr:
                self._garbage(len(self._addr))
            self._state, self._addr, self._body = _BODY, "", bytearray()
        elif b in (ENQ, ACK, NAK, EOT):
            out.append(Control(b, self._addr))
            self.counts["controls"] += 1
            self._state, self._addr = _IDLE, ""
        elif b in ADDRESS_CHARS:
            if len(self._addr) >= 2:  # addresses are short: a run of digits is noise
                self._garbage(len(self._addr))
                self._addr = ""
            self._addr += chr(b)
            self._state = _ADDR
        else:
            self._garbage(1 + len(self._addr))
            self._state, self._addr = _IDLE, ""


__all__ = [
    "ACK",
    "CONTROL_STATION",
    "ENQ",
    "EOT",
    "ETX",
    "HEADERS",
    "NAK",
    "PAGING_SYSTEM",
    "RECORDS",
    "RS",
    "SOH",
    "STX",
    "US",
    "BadBlock",
    "Block",
    "Control",
    "Decoder",
    "EspaError",
    "RecordSpec",
    "bcc",
    "call_records",
    "encode_block",
    "encode_block_obj",
    "parse_body",
    "poll_sequence",
    "select_sequence",
]
