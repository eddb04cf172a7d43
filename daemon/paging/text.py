"""What a handset displays: priority and room first, cut to the configured width.

For an emergency the lead is the site's protocol: "HIGH Uptake 3 DETERIORATING call 2222",
then the first action as far as it fits. The lead is never cut for the tail; if even the lead
is too wide it is cut at the width (the call number is kept before the room is: it is the action).
"""

from __future__ import annotations

import unicodedata
from typing import Any

PRIORITY_WORD = {"high": "HIGH", "medium": "MED", "low": "LOW"}


def ascii_only(s: str) -> str:
    """ISO 646 printable: accents dropped (Ü -> U), anything else becomes '?', whitespace one space."""
    s = unicodedata.normalize("NFKD", s)
    out = []
    for ch in s:
        if unicodedata.combining(ch):
            continue
        o = ord(ch)
        if ch.isspace():
            out.append(" ")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        else:
            out.append("?")
    return " ".join("".join(out).split())


def _fit(parts: list[str], width: int) -> str:
    text = ""
    for p in parts:
        cand = f"{text} {p}" if text else p
        if len(cand) <= width:
            text = cand
        else:
            room = width - len(text) - (1 if text else 0)
            if room >= 4:  # a useful fragment only
                text = f"{text} {p[:room]}" if text else p[:room]
            break
    return text


def display_text(
    alarm: dict[str, Any], room: str | None, width: int, emergency_word: str, emergency: bool
) -> str:
    prio = PRIORITY_WORD.get(alarm.get("priority", ""), str(alarm.get("priority", "")).upper())
    room = ascii_only(room or "")
    proto = alarm.get("protocol") or None
    if emergency and proto:
        number = ascii_only(str(proto.get("number", "")))
        first = ascii_only((proto.get("first_actions") or [""])[0])
        lead = (
            [prio, room, emergency_word, f"call {number}"]
            if room
            else [prio, emergency_word, f"call {number}"]
        )
        lead_text = " ".join(p for p in lead if p)
        if len(lead_text) > width:
            # Keep priority and the number; the room goes first when space is short.
            lead_text = _fit([prio, f"call {number}", room, emergency_word], width)
            return lead_text
        return _fit([lead_text, first], width)
    return _fit([p for p in (prio, room, ascii_only(alarm.get("message", ""))) if p], width)
