"""Shutdown topics and payloads, and the route that publishes them from journal events.

Topics (relative to ``suitemon/<site>/``), one per target so a broker ACL can give each
target read on its own command topic and write on its own reply topic only:

- ``shutdown/cmd/<target>``       commands (and resume commands) to a target
- ``shutdown/reply/<target>``     its replies, quoting the command's correlation id
- ``shutdown/rehearse/<target>``  dry-run commands: a target must answer, never act
- ``shutdown/state``              the sequence state (retained)

The correlation id travels in the JSON payload, so the contract is the same on MQTT
3.1.1 and 5. Commands go out through the outbox like every event's messages: journaled
first, re-sent until the broker has them; a target de-duplicates by correlation id.
"""

from __future__ import annotations

import json
from typing import Any

from suitemon.daemon.contract import Message, Topics, dumps
from suitemon.daemon.journal import Event

REPLY_STATUSES = ("done", "failed")
MAX_REPLY = 16 * 1024


def command_topic(topics: Topics, target: str) -> str:
    return topics.sub("shutdown", "cmd", target)


def reply_topic(topics: Topics, target: str) -> str:
    return topics.sub("shutdown", "reply", target)


def rehearse_topic(topics: Topics, target: str) -> str:
    return topics.sub("shutdown", "rehearse", target)


def state_topic(topics: Topics) -> str:
    return topics.sub("shutdown", "state")


def reply_filter(topics: Topics) -> str:
    return topics.sub("shutdown", "reply", "+")


def command_payload(
    *,
    topics: Topics,
    site: str,
    target: str,
    correlation_id: str,
    sequence_id: str | None,
    step: str,
    command: str,
    args: dict[str, Any],
    timeout_s: float,
    deadline: str | None,
    issued_at: str,
    resume: bool = False,
    rehearsal: bool = False,
) -> dict[str, Any]:
    return {
        "correlation_id": correlation_id,
        "sequence_id": sequence_id,
        "site": site,
        "target": target,
        "step": step,
        "command": command,
        "args": args,
        "resume": resume,
        "rehearsal": rehearsal,
        "reply_to": reply_topic(topics, target),
        "timeout_s": timeout_s,
        "deadline": deadline,
        "issued_at": issued_at,
    }


class BadReply(ValueError):
    pass


def parse_reply(payload: bytes) -> dict[str, Any]:
    """A target's reply: ``{"correlation_id": str, "status": "done"|"failed", "detail": str?}``."""
    if len(payload) > MAX_REPLY:
        raise BadReply(f"reply of {len(payload)} bytes is larger than {MAX_REPLY}")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadReply(f"reply is not JSON: {err}") from None
    if not isinstance(body, dict):
        raise BadReply("reply must be a JSON object")
    cid = body.get("correlation_id")
    if not isinstance(cid, str) or not cid:
        raise BadReply("reply needs a correlation_id (string)")
    if body.get("status") not in REPLY_STATUSES:
        raise BadReply(f"reply status must be one of {', '.join(REPLY_STATUSES)}")
    detail = body.get("detail")
    if detail is not None and not isinstance(detail, str):
        raise BadReply("detail must be a string")
    return body


def shutdown_messages(event: Event, topics: Topics, site: str) -> list[Message]:
    """The command a step event carries, then the retained sequence state."""
    if not event.type.startswith("shutdown."):
        return []
    out = []
    cmd = event.data.get("command")
    if isinstance(cmd, dict):
        out.append(Message(command_topic(topics, cmd["target"]), dumps(cmd), 1, False))
    state = event.data.get("state")
    if isinstance(state, dict):
        out.append(Message(state_topic(topics), dumps(state), 1, True))
    return out
