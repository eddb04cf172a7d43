"""The request window in-process, on a real journal: a resend that arrives while the first run
is still going waits for it and gets its answer; a failed first run lets the resend run; the
window is rebuilt from the journal and forgets what is older than its length."""

from __future__ import annotations

import asyncio
import time

from suitemon.daemon.events import Recorder
from suitemon.daemon.journal import Journal
from suitemon.daemon.request_window import RequestWindow


def test_a_resend_during_the_first_run_waits_for_its_answer(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    runs = []

    async def main():
        window = RequestWindow(Recorder(journal))

        async def command(n):
            first = await window.claim("nurse1", "r1", "dose-record")
            if first is not None:
                return first
            runs.append(n)
            await asyncio.sleep(0.05)  # a handler that awaits (a slow device, a thread)
            reply = {"request_id": "r1", "verb": "dose-record", "ok": True, "result": {"n": n}}
            window.done("nurse1", "r1", "dose-record", reply)
            return reply

        return await asyncio.gather(command(1), command(2), command(3))

    replies = asyncio.run(main())
    assert runs == [1]
    assert [r["result"] for r in replies] == [{"n": 1}] * 3
    journal.close()


def test_a_failed_first_run_lets_the_resend_run(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")

    async def main():
        window = RequestWindow(Recorder(journal))
        assert await window.claim("nurse1", "r1", "ack") is None
        waiting = asyncio.create_task(window.claim("nurse1", "r1", "ack"))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        window.release("nurse1", "r1")  # the first run was rejected: nothing changed
        assert await waiting is None  # the resend runs
        # Another user's identical id is theirs.
        assert await window.claim("nurse2", "r1", "ack") is None

    asyncio.run(main())
    journal.close()


def test_the_window_is_rebuilt_from_the_journal_and_expires(tmp_path):
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)

    async def first_life():
        window = RequestWindow(Recorder(journal), window_s=60)
        assert await window.claim("rps", 7, "occupancy") is None
        window.done(
            "rps", 7, "occupancy", {"request_id": 7, "verb": "occupancy", "ok": True, "result": {"a": 1}}
        )
        window.recorder.flush()

    asyncio.run(first_life())
    journal.close()
    journal = Journal(path)

    async def next_life(at: float):
        window = RequestWindow(Recorder(journal), window_s=60, clock=lambda: at)
        return await window.claim("rps", 7, "occupancy"), await window.claim("rps", "7", "occupancy")

    again, other_type = asyncio.run(next_life(time.time() + 1))
    assert again == {"request_id": 7, "verb": "occupancy", "ok": True, "result": {"a": 1}}
    assert other_type is None  # "7" is not 7: the JSON type is part of the id
    expired, _ = asyncio.run(next_life(time.time() + 120))
    assert expired is None
    journal.close()
