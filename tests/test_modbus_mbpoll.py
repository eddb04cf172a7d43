"""Our Modbus simulators read and written by an independent master: libmodbus's ``mbpoll``.

Until now only our own pymodbus-based drivers had read the simulators, so a framing or map mistake
made the same way on both sides would go unseen. mbpoll (libmodbus) does its own MBAP/RTU framing,
CRC, exception decoding and 32-bit word-order handling (``-B``: high word first). Every Modbus kind
of the driver contract (tests/contract_cases.py) is served by ``SimHost`` exactly as ``suitemon sim``
serves it, over TCP on 127.0.0.1 and RTU over the simulator's pty pair, and each point of its
profile is read with the type the profile gives it. docs/decisions.md, "Modbus against libmodbus".
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from typing import Any

import pytest
from contract_cases import CASES
from helpers import wait_until_async
from test_driver_contract import build

from suitemon.drivers.profile import Point, encode
from suitemon.simulators.host import SimHost

MBPOLL = "/usr/bin/mbpoll"
TABLE_TYPE = {"coil": "0", "discrete": "1", "input": "3", "holding": "4"}
REGISTER_CASES = [c for c in CASES if c["kind"] != "callbell_io"]  # the call-bell module has no registers
RIGS = [(c, t) for c in REGISTER_CASES for t in ("tcp", "rtu")]
IDS = [f"{c['kind']}-{t}" for c, t in RIGS]
VALUE_LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)\s*$", re.MULTILINE)


@contextlib.asynccontextmanager
async def served(case: dict, transport: str, tmp_path):
    cfg = build(case, transport, tmp_path)
    host = SimHost(cfg)
    await host.start(control=False)
    try:
        yield cfg.devices["dut"], host.sims["dut"]
    finally:
        await host.stop()


async def mbpoll(
    dev, table: str, address: int, count: int = 1, fmt: str = "", big: bool = False, write: list[int] = ()
) -> tuple[int, dict[int, str], str]:
    """One mbpoll request: (exit code, {reference: printed value}, stderr). References are 0-based (-0)."""
    if dev.transport == "tcp":
        line, target = ["-m", "tcp", "-p", str(dev.port)], dev.host
    else:
        parity = {"N": "none", "E": "even", "O": "odd"}[dev.parity]
        line = ["-m", "rtu", "-b", str(dev.baudrate), "-P", parity, "-d", str(dev.bytesize)]
        line += ["-s", str(dev.stopbits)]
        target = dev.serial_port
    args = [*line, "-a", str(dev.unit), "-0", "-1", "-o", "1", "-t", TABLE_TYPE[table] + fmt]
    args += ["-r", str(address), *([] if write else ["-c", str(count)]), *(["-B"] if big else []), target]
    if write:
        args += ["--", *(str(v) for v in write)]
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    values = {int(ref): v for ref, v in VALUE_LINE.findall(out.decode())}
    return proc.returncode, values, err.decode()


async def read_point(dev, p: Point) -> Any:
    """The point's value as mbpoll reads it, given the meaning the profile states."""
    big = p.word_order == "big"
    if p.type == "f32":
        rc, v, err = await mbpoll(dev, p.table, p.address, fmt=":float", big=big)
        assert rc == 0, f"{p.name}: {err}"
        return float(v[p.address])
    if p.type in ("u32", "s32"):
        rc, v, err = await mbpoll(dev, p.table, p.address, fmt=":int", big=big)
        assert rc == 0, f"{p.name}: {err}"
        raw = int(v[p.address]) & 0xFFFFFFFF
        return _meaning(p, raw, 32)
    if p.type == "bool":
        rc, v, err = await mbpoll(dev, p.table, p.address)
        assert rc == 0, f"{p.name}: {err}"
        return v[p.address] == "1"
    rc, v, err = await mbpoll(dev, p.table, p.address, p.count, fmt=":hex")
    assert rc == 0, f"{p.name}: {err}"
    words = [int(v[p.address + i], 16) for i in range(p.count)]
    if p.type == "ascii":
        text = b"".join(w.to_bytes(2, "big") for w in words)
        return text.split(b"\0", 1)[0].decode("ascii", errors="replace").rstrip(" ")
    return _meaning(p, words[0], 16)


def _meaning(p: Point, raw: int, width: int) -> Any:
    if p.signed_sentinel is not None and raw == p.signed_sentinel:
        return None
    value = raw - (1 << width) if p.type in ("s16", "s32") and raw >> (width - 1) else raw
    if p.bits:
        return {name: bool(value >> bit & 1) for name, bit in p.bits.items()} | {"raw": value}
    return value / p.scale if p.scale != 1.0 else value


@pytest.fixture
def intended(monkeypatch) -> dict[tuple[str, str, int], Any]:
    """The value each point was last meant to hold: every simulator writes its registers through
    ``profile.encode``, so recording its arguments gives the model's values, independent of our decoder."""
    from suitemon.simulators import base, dispenser, ups_apc

    seen: dict[tuple[str, str, int], Any] = {}

    def recording(point: Point, value: Any) -> list[int]:
        seen[key(point)] = value
        return encode(point, value)

    for module in (base, dispenser, ups_apc):
        monkeypatch.setattr(module, "encode", recording)
    return seen


def key(p: Point) -> tuple[str, str, int]:
    return (p.name, p.table, p.address)


def agrees(p: Point, got: Any, want: Any) -> bool:
    """mbpoll's reading against the intended value, within what the register can carry."""
    if got is None:  # the raw value is the point's "not available" sentinel: was that what was meant?
        words = encode(p, want) if want is not None else [0] * p.count
        if p.count == 2 and p.word_order == "little":
            words = words[::-1]
        return int.from_bytes(b"".join(w.to_bytes(2, "big") for w in words), "big") == p.signed_sentinel
    if want is None:  # never written: the register still holds zeros
        return got in (0, 0.0, False, "") or (isinstance(got, dict) and not any(got[b] for b in p.bits))
    if p.bits:
        want = want if isinstance(want, dict) else {b: bool(want >> bit & 1) for b, bit in p.bits.items()}
        return all(got[b] == bool(want.get(b)) for b in p.bits)
    if p.type == "f32":
        return math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-30)
    if p.type in ("bool", "ascii"):
        return got == (bool(want) if p.type == "bool" else str(want))
    return abs(got - want) <= 0.5 / p.scale + 1e-9


@pytest.mark.parametrize("case, transport", RIGS, ids=IDS)
def test_mbpoll_reads_every_point_as_the_profile_describes(case, transport, tmp_path, intended):
    async def body():
        async with served(case, transport, tmp_path) as (dev, sim):
            wrong = []
            for p in sim.profile.points:
                got = await read_point(dev, p)
                # Straight after the answer: the model moves on at each request; this is what it sent.
                want = intended.get(key(p))
                if not agrees(p, got, want):
                    wrong.append(
                        f"{p.name} ({p.table} {p.address} {p.type} {p.word_order}): {got!r} != {want!r}"
                    )
            # The driver reads in blocks (profile.blocks): each must be answered whole.
            for table, start, count, _ in sim.profile.blocks():
                rc, v, err = await mbpoll(
                    dev, table, start, count, fmt="" if table in ("coil", "discrete") else ":hex"
                )
                if rc != 0 or len(v) != count:
                    wrong.append(f"block {table} {start}+{count}: rc {rc}, {len(v)} values, {err.strip()}")
            return wrong

    assert asyncio.run(body()) == []


def unmapped(sim, table: str) -> int:
    used = {a for p in sim.profile.points if p.table == table for a in range(p.address, p.end)}
    used |= set(sim.store.tables[table])
    return next(a for a in range(max(used, default=0) + 1, 65536) if a not in used)


@pytest.mark.parametrize("case, transport", RIGS, ids=IDS)
def test_an_unmapped_address_is_an_illegal_address_exception(case, transport, tmp_path):
    async def body():
        async with served(case, transport, tmp_path) as (dev, sim):
            out = []
            for table in sorted({p.table for p in sim.profile.points}):
                gap = unmapped(sim, table)
                out.append(await mbpoll(dev, table, gap))
                # A request that starts on a mapped register and runs past the map is refused whole.
                last = gap - 1
                out.append(await mbpoll(dev, table, last, 2))
            # The line is still in step after the exceptions.
            p = sim.profile.points[0]
            out.append(await mbpoll(dev, p.table, p.address, p.count))
            return out

    *refused, after = asyncio.run(body())
    for rc, values, err in refused:
        assert rc != 0 and values == {} and "Illegal data address" in err, (rc, values, err)
    assert after[0] == 0, after[2]


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_ups_outlet_command_and_shutdown_delay_written_by_mbpoll(transport, tmp_path):
    (case,) = [c for c in CASES if c["kind"] == "ups_apc"]

    async def body():
        async with served(case, transport, tmp_path) as (dev, sim):
            delay = sim.profile.point("shutdown_delay_s")
            rc, _, err = await mbpoll(dev, "holding", delay.address, write=[90])
            assert rc == 0, err
            cmd = sim.profile.point("outlet_command")
            # APC AN176: a 32-bit command is one FC 16 write of both registers, most significant first.
            bits = cmd.bits
            raw = 1 << bits["off"] | 1 << bits["use_off_delay"] | 1 << bits["main_group"]
            rc, _, err = await mbpoll(dev, "holding", cmd.address, fmt=":int", big=True, write=[raw])
            assert rc == 0, err
            rc, v, err = await mbpoll(dev, "holding", delay.address)
            return sim.get_points()["shutdown_delay_s"], int(v[delay.address]), list(sim.outlet_commands), raw

    stored, read_back, commands, raw = asyncio.run(body())
    assert stored == read_back == 90
    assert [c["raw"] for c in commands] == [raw]
    assert commands[0]["bits"] == ["main_group", "off", "use_off_delay"]


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_callbell_inputs_latch_and_lamp_coils_written_by_mbpoll(transport, tmp_path):
    (case,) = [c for c in CASES if c["kind"] == "callbell_io"]
    room = case["config"]["rooms"]["uptake3"]

    async def body():
        async with served(case, transport, tmp_path) as (dev, sim):
            io = sim.io
            await sim.control("press", {"room": "uptake3", "button": "emergency", "hold_s": 0.01})
            await asyncio.sleep(0.05)  # released again: only the latch remembers the press
            first = await mbpoll(dev, "discrete", io.input_base, io.inputs)
            second = await mbpoll(dev, "discrete", io.input_base, io.inputs)
            lamp = io.coil_base + room["door_lamp"]
            on = await mbpoll(dev, "coil", lamp, write=[1])
            lit = (await mbpoll(dev, "coil", io.coil_base, io.coils), list(sim.store.coils))
            # The lamp reset: all lamps of the module off in one FC 15 write.
            off = await mbpoll(dev, "coil", io.coil_base, io.coils, write=[0] * io.coils)
            dark = list(sim.store.coils)
            beyond = await mbpoll(dev, "coil", io.coil_base + io.coils)
            return io, first, second, on, lit, off, dark, beyond

    io, first, second, on, lit, off, dark, beyond = asyncio.run(body())
    emergency = io.input_base + room["emergency"]
    assert first[0] == 0 and first[1][emergency] == "1", first
    assert sum(v == "1" for v in first[1].values()) == 1 and len(first[1]) == io.inputs
    assert second[0] == 0 and second[1][emergency] == "0", "a latched input is cleared once read"
    assert on[0] == 0, on[2]
    (rc, coils, err), stored = lit
    assert rc == 0 and stored[room["door_lamp"]] == 1 and sum(stored) == 1
    assert coils[io.coil_base + room["door_lamp"]] == "1", err
    assert off[0] == 0 and dark == [0] * io.coils, off[2]
    assert beyond[0] != 0 and "Illegal data address" in beyond[2]


def test_an_unserved_function_code_gets_the_illegal_function_exception_over_rtu(tmp_path):
    # mbpoll -u sends FC 17 (Report Server ID). The RTU simulator used to take it for noise and stay
    # silent (a timeout at the master); a Modbus slave answers an unsupported function with exception 01.
    async def body():
        async with served(CASES[0], "rtu", tmp_path) as (dev, sim):
            parity = {"N": "none", "E": "even", "O": "odd"}[dev.parity]
            args = ["-m", "rtu", "-b", str(dev.baudrate), "-P", parity, "-a", str(dev.unit), "-1", "-o", "1"]
            proc = await asyncio.create_subprocess_exec(
                MBPOLL,
                *args,
                "-u",
                dev.serial_port,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(proc.communicate(), 10)
            p = sim.profile.points[0]
            after = await mbpoll(dev, p.table, p.address, p.count)
            return err.decode(), after, sim.endpoint.bad_frames

    err, after, bad_frames = asyncio.run(body())
    assert "Illegal function" in err, err  # mbpoll exits 0 here: its message is the verdict
    assert after[0] == 0, after[2]
    assert bad_frames == 0


@pytest.mark.parametrize("kind", ["area_monitor_modbus", "ups_apc"])
def test_rtu_through_a_socat_pty_pair_reads_the_same(kind, tmp_path, intended):
    # A second pty pair made by socat between mbpoll and the simulator's line, as a serial server or a
    # USB adapter would sit there: bytes may arrive in other pieces than they were written.
    (case,) = [c for c in CASES if c["kind"] == kind]

    async def body():
        async with served(case, "rtu", tmp_path) as (dev, sim):
            relay = tmp_path / "relay.tty"
            socat = await asyncio.create_subprocess_exec(
                "/usr/bin/socat", f"PTY,link={relay},raw,echo=0", f"FILE:{dev.serial_port},raw,echo=0"
            )
            try:
                await wait_until_async(relay.exists, 5, what="socat's pty")
                far = dev.model_copy(update={"serial_port": str(relay)})
                wrong = []
                for p in sim.profile.points:
                    got = await read_point(far, p)
                    if not agrees(p, got, intended.get(key(p))):
                        wrong.append(f"{p.name}: {got!r} != {intended.get(key(p))!r}")
                return wrong, sim.endpoint.bad_frames
            finally:
                socat.terminate()
                await socat.wait()

    assert asyncio.run(body()) == ([], 0)
