"""The parser process: results as in-process parsing, and a dead parser is replaced, not fatal."""

from __future__ import annotations

import asyncio
import os
import signal
from zoneinfo import ZoneInfo

from suitemon.daemon.dicom.parse import Parsed, Unparseable
from suitemon.daemon.dicom.worker import ParserPool
from suitemon.simulators import dicom_study as st

TZ = ZoneInfo("Europe/London")


def test_a_killed_parser_process_is_replaced_and_the_batch_still_parsed(tmp_path):
    spec = st.StudySpec(ct_slices=2, pet_slices=1, ct_rows=16, ct_cols=16, pet_rows=8, pet_cols=8)
    paths = st.write_study(spec, tmp_path / "study")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    paths.append(tmp_path / "junk.dcm")

    async def main():
        pool = ParserPool(b"k" * 32, TZ)
        try:
            await pool.warm_up()
            first = await pool.parse(paths)
            (pid,) = list(pool._pool._processes)  # the child, killed as a crash would
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.2)
            second = await pool.parse(paths)
            return first, second
        finally:
            pool.close()

    first, second = asyncio.run(main())
    for results in (first, second):
        assert [type(r) for r in results] == [Parsed] * 5 + [Unparseable]
        assert {r.kind for r in results[:5]} == {"ct_image", "pet_image", "ct_dose", "rp_dose"}
        assert results[2].pet.activity_mbq == 350.0


def test_a_daemon_killed_outright_leaves_no_parser_behind(tmp_path):
    import subprocess
    import sys

    from helpers import REPO, wait_until

    script = tmp_path / "owner.py"
    script.write_text(
        "import asyncio, os, signal, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from zoneinfo import ZoneInfo\n"
        "from suitemon.daemon.dicom.worker import ParserPool\n"
        "async def main():\n"
        "    pool = ParserPool(b'k' * 32, ZoneInfo('UTC'))\n"
        "    await pool.warm_up()\n"
        "    print(*pool._pool._processes, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == -9, r.stderr
    child = int(r.stdout.split()[0])
    wait_until(
        lambda: not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z",
        5,
        what="parser process gone",
    )
