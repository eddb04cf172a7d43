"""The upsd network protocol's lines: split, quote, and the ERR answers.

upsd answers one line per request (or a BEGIN LIST ... END LIST block). A line is
words separated by spaces; a value is in double quotes with ``\\"`` and ``\\\\``
escaped (NUT's docs/net-protocol.txt). Anything else is a garbled answer: the
decoder raises :class:`NutFrameError`, never guesses. Names we send are checked,
so a configured name can never smuggle a second command onto the line.
"""

from __future__ import annotations

import re

from suitemon.drivers.base import CommError, DeviceException, FrameError

MAX_LINE = 4096  # upsd's own lines are far shorter; a longer one is noise
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# upsd says the UPS (or its driver) is not answering: that is a lost UPS, not a refusal.
COMM_ERRORS = frozenset({"DATA-STALE", "DRIVER-NOT-CONNECTED"})


class NutFrameError(FrameError):
    """An answer line that is not valid upsd protocol."""


class NutError(DeviceException):
    """upsd answered ``ERR <code>``: a refusal (access denied, unknown UPS, unsupported command)."""

    def __init__(self, code: str, request: str):
        super().__init__(f"upsd refused {request!r}: ERR {code}")
        self.nut_code = code


class NutStale(CommError):
    """upsd is up but its UPS driver is not: ``ERR DATA-STALE`` / ``DRIVER-NOT-CONNECTED``."""


def split_line(raw: bytes) -> list[str]:
    """Split one answer line (with or without its newline) into words, unquoting values."""
    if len(raw) > MAX_LINE:
        raise NutFrameError(f"answer line of {len(raw)} bytes is longer than {MAX_LINE}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NutFrameError(f"answer is not UTF-8 text: {err}") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if any(c in text for c in "\r\n\0"):
        raise NutFrameError(f"control character inside an answer line: {text!r}")
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == " ":
            i += 1
            continue
        if c == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise NutFrameError(f"unterminated quoted value: {text!r}")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise NutFrameError(f"backslash at the end of a line: {text!r}")
                    buf.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    buf.append(c)
                    i += 1
            if i < n and text[i] != " ":
                raise NutFrameError(f"text right after a closing quote: {text!r}")
            words.append("".join(buf))
        else:
            j = text.find(" ", i)
            j = n if j < 0 else j
            word = text[i:j]
            if '"' in word or "\\" in word:
                raise NutFrameError(f"stray quote or backslash in {word!r}")
            words.append(word)
            i = j
    if not words:
        raise NutFrameError("empty answer line")
    return words


def quote(value: str) -> str:
    """A value as upsd reads it: in double quotes, quote and backslash escaped."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"a value sent to upsd may not hold a line break: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def name(value: str, what: str) -> str:
    """A UPS, variable or command name we are about to send, checked."""
    if not NAME.match(value):
        raise ValueError(f"{what} {value!r} is not a NUT name (letters, digits, '.', '_', '-')")
    return value


def raise_for_error(words: list[str], request: str) -> None:
    """``ERR <code> ...`` becomes the matching exception; any other answer passes."""
    if words[0] != "ERR":
        return
    code = words[1] if len(words) > 1 else "UNKNOWN"
    if code in COMM_ERRORS:
        raise NutStale(f"upsd has no fresh data for {request!r}: ERR {code}")
    raise NutError(code, request)


def parse_var(words: list[str], ups: str) -> tuple[str, str]:
    """``VAR <ups> <name> "<value>"`` -> (name, value)."""
    if len(words) != 4 or words[0] != "VAR" or words[1] != ups:
        raise NutFrameError(f"expected VAR {ups} <name> <value>, got {' '.join(words)!r}")
    return words[2], words[3]
