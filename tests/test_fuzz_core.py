"""Property tests on the core's inputs: nothing a wire or a person sends may crash the daemon.

Short in CI; `SUITEMON_FUZZ=long` runs thousands of cases per target.
"""

from __future__ import annotations

import asyncio
import json
import struct
import tomllib

import pytest
from helpers import REPO
from hypothesis import given
from hypothesis import strategies as st

from suitemon.daemon.alarms import AlarmEngine, Condition
from suitemon.daemon.commands import Commands, register_core
from suitemon.daemon.config import ConfigError, parse_config
from suitemon.daemon.context import Context
from suitemon.daemon.contract import Topics
from suitemon.daemon.events import Recorder
from suitemon.daemon.facts import Facts
from suitemon.daemon.journal import Journal
from suitemon.daemon.metrics import Metrics
from suitemon.drivers.profile import TYPES, Point, decode, encode
from suitemon.simulators.base import RegisterStore
from suitemon.simulators.modbus_server import ModbusError, handle_pdu, rtu_request_length

EXAMPLE = tomllib.loads((REPO / "examples" / "suite.toml").read_text())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)


# -- commands -------------------------------------------------------------------------
class _Harness:
    def __init__(self, path):
        self.journal = Journal(path)
        self.recorder = Recorder(self.journal)
        cfg = parse_config(
            {
                "site": {"id": "fz", "name": "f"},
                "roles": {
                    "ops": {"name": "o", "members": ["nurse1"], "commands": ["*"]},
                    "limited": {
                        "name": "l",
                        "members": ["nurse2"],
                        "commands": ["ack", "occupancy"],
                        "areas": ["a1"],
                    },
                },
                "areas": {"a1": {"name": "A1", "kind": "uptake_room"}},
            }
        )
        self.replies: list[tuple[str, dict]] = []
        self.ctx = Context(
            cfg=cfg,
            recorder=self.recorder,
            engine=AlarmEngine(self.recorder, cfg),
            topics=Topics("suitemon", "fz"),
            metrics=Metrics(),
            facts=Facts(),
            publish_json=lambda t, o, retain=False: self.replies.append((t, o)),
        )
        self.ctx.commands = Commands(self.ctx)
        register_core(self.ctx.commands, self.ctx.engine, self.recorder)


@given(
    verb=st.sampled_from(["ack", "reset", "accept", "reject", "correct", "occupancy", "nope", "", "a/b"]),
    actor=st.sampled_from(["nurse1", "nurse2", "display"]) | st.text(max_size=20),
    payload=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(
                ["alarm_id", "note", "reason", "event_id", "request_id", "data", "area", "occupied"]
            ),
            json_values,
            max_size=5,
        ).map(lambda d: json.dumps(d).encode()),
    ),
)
def test_any_command_payload_gets_an_answer_and_no_crash(tmp_path_factory, verb, actor, payload):
    h = _Harness(tmp_path_factory.mktemp("fz") / "j.sqlite3")

    async def main():
        h.ctx.engine.apply(Condition(alarm_id="x.y", type="t.t", present=True))
        await h.ctx.commands.on_message(f"suitemon/fz/cmd/{actor}/{verb}", payload)
        h.recorder.flush()

    asyncio.run(main())
    accepted = h.ctx.metrics.counters["commands.accepted"]
    rejected = h.ctx.metrics.counters["commands.rejected"]
    assert accepted + rejected == 1
    if rejected:
        assert [e.type for e in h.journal.events_after(0, 100)][-1] == "command.rejected"
    assert h.journal.verify().ok
    h.journal.close()


# -- config -----------------------------------------------------------------------------
def _paths(d, prefix=()):
    for k, v in d.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from _paths(v, (*prefix, k))


PATHS = list(_paths(EXAMPLE))


@given(path=st.sampled_from(PATHS), value=json_values)
def test_mutated_config_is_valid_or_reports_key_paths(path, value):
    data = json.loads(json.dumps(EXAMPLE))
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    try:
        parse_config(data)
    except ConfigError as err:
        assert err.issues and all(isinstance(i.path, str) and i.message for i in err.issues)


# -- Modbus decoding --------------------------------------------------------------------------
@given(
    type_=st.sampled_from(sorted(TYPES)),
    words=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2),
    order=st.sampled_from(["big", "little"]),
    scale=st.sampled_from([1.0, 10.0, 512.0]),
)
def test_decode_any_registers_and_roundtrip(type_, words, order, scale):
    p = Point(
        name="p",
        table="holding" if type_ != "bool" else "coil",
        address=0,
        type=type_,
        word_order=order,
        scale=1.0 if type_ == "f32" else scale,
    )
    v = decode(p, words[: p.count])
    if type_ in ("u16", "s16", "u32", "s32") and v is not None:
        assert encode(p, v) == words[: p.count]


@given(st.binary(max_size=64))
def test_rtu_framing_and_pdu_handling_never_crash(data):
    n = rtu_request_length(data)
    assert n is None or n == -1 or n >= 4  # address, function code, CRC: the shortest request (FC 17)
    store = RegisterStore()
    store.define("holding", 0, 10, writable=True)
    store.define("coil", 0, 16)
    try:
        resp = handle_pdu(store, data[1:])
        assert resp and resp[0] == data[1]
    except ModbusError as err:
        assert err.code in (1, 2, 3, 4)


@given(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20))
def test_fc16_write_then_fc3_read_roundtrip(values):
    store = RegisterStore()
    store.define("holding", 0, 20, writable=True)
    pdu = struct.pack(">BHHB", 16, 0, len(values), 2 * len(values)) + struct.pack(f">{len(values)}H", *values)
    assert handle_pdu(store, pdu)[:5] == pdu[:5]
    resp = handle_pdu(store, struct.pack(">BHH", 3, 0, len(values)))
    assert list(struct.unpack(f">{len(values)}H", resp[2:])) == values


@pytest.mark.parametrize(
    "pdu",
    [
        struct.pack(">BHHB", 15, 0, 20, 1) + b"\xff",  # 20 coils in 1 byte: used to raise IndexError
        struct.pack(">BHHB", 15, 0, 3, 2) + b"\x07\x00",  # 3 coils take 1 byte, not 2
        struct.pack(">BHHB", 15, 0, 0, 0),
        struct.pack(">BHHB", 16, 0, 124, 248) + bytes(248),  # over the 123-register limit
    ],
)
def test_a_multiple_write_whose_counts_disagree_is_illegal_value(pdu):
    store = RegisterStore()
    store.define("holding", 0, 200, writable=True)
    store.define("coil", 0, 32)
    with pytest.raises(ModbusError) as err:
        handle_pdu(store, pdu)
    assert err.value.code == 3
