"""Each command once: a resend with the same ``request_id`` gets the first answer, not a second run.

A double click, a board that retries, or an MQTT redelivery must not record two dose
administrations. An accepted command that carried a ``request_id`` is journaled as
``command.accepted`` (verb, request_id, result) in the same group commit as what it
changed, so after a restart the window is rebuilt from the journal and holds exactly
the commands whose effects are durable. The key is (actor, request_id): one user
cannot block another's ids. A resend that arrives while the first is still running
waits for it. Rejections are not remembered: they changed nothing, so running the
command again is harmless and lets a user retry after, say, a device came back.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from suitemon.daemon.alarms import iso, parse_iso
from suitemon.daemon.command_error import CommandError
from suitemon.daemon.events import Recorder

log = structlog.get_logger("suitemon.commands")

WINDOW_S = 24 * 3600.0  # longer than any redelivery or retry we know of (docs/decisions.md)
MAX_ENTRIES = 100_000  # bounded memory even under a flood of distinct ids
EVENT = "command.accepted"

Key = tuple[str, str]


class RequestWindow:
    def __init__(
        self, recorder: Recorder, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time
    ) -> None:
        self.recorder = recorder
        self.window_s = window_s
        self.clock = clock
        self._done: OrderedDict[Key, tuple[float, str, dict[str, Any]]] = OrderedDict()
        self._running: dict[Key, asyncio.Future[None]] = {}
        self._restore()

    @staticmethod
    def _key(actor: str, request_id: object) -> Key:
        # 7 and "7" are one id to a person; the type is kept apart all the same for JSON.
        return actor, f"{type(request_id).__name__}:{request_id}"

    def _restore(self) -> None:
        journal = self.recorder.journal
        cutoff = self.clock() - self.window_s
        since = journal.first_seq_since(_iso(cutoff)) - 1
        n = 0
        for ev in journal.events_of_type(EVENT, since_seq=since):
            d = ev.data
            if d.get("request_id") is None or ev.type != EVENT:
                continue
            reply = {"request_id": d["request_id"], "verb": d["verb"], "ok": True, "result": d.get("result")}
            self._remember(self._key(ev.actor, d["request_id"]), _ts(ev.ts), d["verb"], reply)
            n += 1
        if n:
            log.info("command window restored from the journal", commands=n, window_s=self.window_s)

    def _remember(self, key: Key, at: float, verb: str, reply: dict[str, Any]) -> None:
        self._done[key] = (at, verb, reply)
        self._done.move_to_end(key)
        while len(self._done) > MAX_ENTRIES:
            self._done.popitem(last=False)

    def _expire(self) -> None:
        cutoff = self.clock() - self.window_s
        while self._done:
            at, _, _ = next(iter(self._done.values()))
            if at >= cutoff:
                break
            self._done.popitem(last=False)

    async def claim(self, actor: str, request_id: object, verb: str) -> dict[str, Any] | None:
        """None: run the command (and call done or release). Else the first reply to send again."""
        key = self._key(actor, request_id)
        while True:
            self._expire()
            first = self._done.get(key)
            if first is not None:
                if first[1] != verb:
                    raise CommandError(f"request_id '{request_id}' was already used for '{first[1]}'")
                return first[2]
            running = self._running.get(key)
            if running is None:
                self._running[key] = asyncio.get_running_loop().create_future()
                return None
            await asyncio.shield(running)  # then look again: done, or released to run anew

    def done(self, actor: str, request_id: object, verb: str, reply: dict[str, Any]) -> None:
        key = self._key(actor, request_id)
        self.recorder.record(
            EVENT, {"verb": verb, "request_id": request_id, "result": reply.get("result")}, actor=actor
        )
        self._remember(key, self.clock(), verb, reply)
        self._wake(key)

    def release(self, actor: str, request_id: object) -> None:
        self._wake(self._key(actor, request_id))

    def _wake(self, key: Key) -> None:
        fut = self._running.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(None)


def _iso(t: float) -> str:
    return iso(t)


def _ts(s: str) -> float:
    try:
        return parse_iso(s)
    except ValueError:
        return time.time()
