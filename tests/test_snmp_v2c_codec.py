"""The project's SNMP v2c codec (drivers/snmp_v2c.py) against pysnmp/pyasn1 as the reference
encoder and decoder, fuzzed with Hypothesis; its client against a real UDP peer on loopback for
the failures snmpd will not produce (garbage, another community, a late answer, a GETNEXT that
goes backwards); and the CPU a v2c poll costs against the real snmpd (issue 16: <= 2 ms)."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import wait_until_async
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder
from pysnmp.proto.api import v2c
from test_ups_snmp import build, polled

from suitemon.daemon import kinds
from suitemon.drivers.base import DeviceException, DeviceTimeout, FrameError
from suitemon.drivers.snmp_v2c import (
    END,
    GET,
    SET,
    SnmpDecodeError,
    V2cClient,
    decode_response,
    encode_request,
)
from suitemon.drivers.ups_snmp import ALARM_DESCR
from suitemon.simulators.host import SimHost

oids = st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=12).flatmap(
    lambda tail: st.sampled_from([(1, 3), (0, 39), (2, 999)]).map(lambda head: head + tuple(tail))
)


def dotted(arcs: tuple[int, ...]) -> str:
    return ".".join(map(str, arcs))


def reference_response(community: bytes, request_id: int, binds: list) -> bytes:
    pdu = v2c.ResponsePDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiPDU.set_varbinds(pdu, binds)
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return ber_encoder.encode(msg)


def test_v2c_request_is_what_pysnmp_decodes():
    wire = encode_request(GET, b"suite-ro", 77, [("1.3.6.1.2.1.33.1.2.1.0", None), ("1.3.6.1.2.1.1", None)])
    msg, rest = ber_decoder.decode(wire, asn1Spec=v2c.Message())
    assert rest == b"" and int(msg["version"]) == 1 and bytes(msg["community"]) == b"suite-ro"
    pdu = v2c.apiMessage.get_pdu(msg)
    assert pdu.tagSet == v2c.GetRequestPDU.tagSet and int(v2c.apiPDU.get_request_id(pdu)) == 77
    binds = v2c.apiPDU.get_varbinds(pdu)
    assert [str(o) for o, _ in binds] == ["1.3.6.1.2.1.33.1.2.1.0", "1.3.6.1.2.1.1"]
    wire = encode_request(SET, b"rw", 2**31 - 1, [("1.3.6.1.2.1.33.1.8.2.0", -1)])
    pdu = v2c.apiMessage.get_pdu(ber_decoder.decode(wire, asn1Spec=v2c.Message())[0])
    assert pdu.tagSet == v2c.SetRequestPDU.tagSet and int(v2c.apiPDU.get_varbinds(pdu)[0][1]) == -1


def test_v2c_response_types_decode_like_pysnmp_encodes_them():
    binds = [
        ("1.3.6.1.2.1.33.1.2.1.0", v2c.Integer(2)),
        ("1.3.6.1.2.1.33.1.8.2.0", v2c.Integer(-1)),
        ("1.3.6.1.2.1.33.1.2.2.0", v2c.Gauge32(4294967295)),
        ("1.3.6.1.2.1.1.3.0", v2c.TimeTicks(123456)),
        ("1.3.6.1.2.1.31.1.1.1.6.1", v2c.Counter64(2**64 - 1)),
        ("1.3.6.1.2.1.1.1.0", v2c.OctetString(b"Smart-UPS 3000")),
        ("1.3.6.1.2.1.33.1.7.1.0", v2c.ObjectIdentifier("1.3.6.1.2.1.33.1.7.7.5")),
        ("1.3.6.1.2.1.33.1.3.3.1.3.1", v2c.NoSuchInstance()),
        ("1.3.6.1.2.1.33.1.4.4.1.5.1", v2c.NoSuchObject()),
        ("1.3.6.1.2.1.33.1.9", v2c.EndOfMibView()),
    ]
    got = decode_response(reference_response(b"c", 5, binds), b"c")
    assert got.request_id == 5 and got.error_status == 0
    assert [v for _, v in got.varbinds] == [
        2,
        -1,
        4294967295,
        123456,
        2**64 - 1,
        b"Smart-UPS 3000",
        "1.3.6.1.2.1.33.1.7.7.5",
        None,
        None,
        END,
    ]
    assert [o for o, _ in got.varbinds] == [o for o, _ in binds]


def test_v2c_response_of_another_community_or_version_is_refused():
    wire = reference_response(b"public", 1, [("1.3.6.1", v2c.Integer(1))])
    with pytest.raises(SnmpDecodeError, match="community"):
        decode_response(wire, b"suite-ro")
    v1 = wire.replace(b"\x02\x01\x01\x04\x06public", b"\x02\x01\x00\x04\x06public", 1)
    with pytest.raises(SnmpDecodeError, match="v2c"):
        decode_response(v1, b"public")
    with pytest.raises(SnmpDecodeError, match="after the message"):
        decode_response(wire + b"\x00", b"public")


@settings(max_examples=80, deadline=None)  # pyasn1, the reference, is the slow side
@given(
    request_id=st.integers(-(2**31), 2**31 - 1),
    binds=st.lists(
        st.tuples(oids, st.integers(-(2**31), 2**31 - 1) | st.binary(max_size=300) | oids), max_size=20
    ),
)
def test_fuzz_v2c_decode_agrees_with_pysnmp(request_id, binds):
    ref = [
        (dotted(o), v2c.Integer(v) if isinstance(v, int) else v2c.OctetString(v))
        if not isinstance(v, tuple)
        else (dotted(o), v2c.ObjectIdentifier(v))
        for o, v in binds
    ]
    got = decode_response(reference_response(b"suite-ro", request_id, ref), b"suite-ro")
    assert got.request_id == request_id
    assert got.varbinds == [(dotted(o), dotted(v) if isinstance(v, tuple) else v) for o, v in binds]


@settings(max_examples=80, deadline=None)  # pyasn1, the reference, is the slow side
@given(oid_list=st.lists(oids, min_size=1, max_size=20), value=st.integers(-(2**31), 2**31 - 1))
def test_fuzz_v2c_requests_decode_with_pysnmp(oid_list, value):
    wire = encode_request(SET, b"x", 1, [(dotted(o), value) for o in oid_list])
    pdu = v2c.apiMessage.get_pdu(ber_decoder.decode(wire, asn1Spec=v2c.Message())[0])
    assert [(tuple(o), int(v)) for o, v in v2c.apiPDU.get_varbinds(pdu)] == [(o, value) for o in oid_list]


_valid = reference_response(
    b"suite-ro", 9, [("1.3.6.1.2.1.33.1.2.1.0", v2c.Integer(2)), ("1.3.6.1.2.1.1.1.0", v2c.OctetString(b"x"))]
)


@settings(max_examples=500, deadline=None)
@given(
    data=st.binary(max_size=200)
    | st.tuples(st.integers(0, len(_valid) - 1), st.integers(0, 255)).map(
        lambda p: _valid[: p[0]] + bytes((p[1],)) + _valid[p[0] + 1 :]
    )
    | st.integers(0, len(_valid) - 1).map(lambda n: _valid[:n])
)
def test_fuzz_v2c_garbage_is_a_response_or_a_decode_error(data):
    """Whatever arrives, the decoder answers a Response or SnmpDecodeError: never another exception."""
    try:
        got = decode_response(data, b"suite-ro")
    except SnmpDecodeError:
        return
    assert isinstance(got.request_id, int) and all(isinstance(o, str) for o, _ in got.varbinds)


class Peer(asyncio.DatagramProtocol):
    """A UDP peer on loopback that answers each request with what the test queued."""

    def __init__(self, answers):
        self.answers = answers

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        msg = ber_decoder.decode(data, asn1Spec=v2c.Message())[0]
        request_id = int(v2c.apiPDU.get_request_id(v2c.apiMessage.get_pdu(msg)))
        for answer in self.answers.pop(0)(request_id):
            self.transport.sendto(answer, addr)


async def peer(answers):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: Peer(answers), local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[1]


def test_v2c_client_garbage_late_answers_and_backward_getnext_are_loud():
    oid = "1.3.6.1.2.1.33.1.2.1.0"

    def answer(request_id, community=b"c", value=None, at=oid):
        return reference_response(community, request_id, [(at, value or v2c.Integer(2))])

    answers = [
        lambda rid: [answer(rid - 1), answer(rid)],  # an old request's answer first: skipped, counted
        lambda rid: [b"\x30\x03\x02\x01"],  # garbage
        lambda rid: [answer(rid, community=b"other")],
        lambda rid: [],  # silence
        lambda rid: [answer(rid, at="1.3.6.1.2.1.33.1.1.0")],  # GETNEXT answered with an earlier OID
        lambda rid: [answer(rid, at="1.3.6.1.2.1.33.1.9.0")],  # GET answered for another OID
        lambda rid: [answer(rid, at="1.3.6.1.2.1.33.1.6.2.1.2.2")],  # a walk's first row
        lambda rid: [answer(rid, at="1.3.6.1.2.1.33.1.6.2.1.2.1")],  # ... and a second one before it
    ]

    async def main():
        transport, port = await peer(answers)
        driver_counters: dict[str, int] = {}
        client = V2cClient("127.0.0.1", port, "c", 0.3, driver_counters)
        await client.open()
        try:
            assert await client.get([oid]) == {oid: 2}
            assert driver_counters == {"requests": 1, "late_answers": 1}
            with pytest.raises(FrameError, match=r"truncated|runs past"):
                await client.get([oid])
            with pytest.raises(FrameError, match="community"):
                await client.get([oid])
            t0 = time.monotonic()
            with pytest.raises(DeviceTimeout):
                await client.get([oid])
            assert 0.25 < time.monotonic() - t0 < 1.0
            with pytest.raises(FrameError, match="not a later object"):
                await client.get_next("1.3.6.1.2.1.33.1.2")
            with pytest.raises(FrameError, match="answered for"):
                await client.get([oid])
            with pytest.raises(FrameError, match="not a later object"):
                await client.walk("1.3.6.1.2.1.33.1.6.2.1.2", 64, rows_per_request=1)
            assert driver_counters["bad_datagrams"] == 2
        finally:
            client.close()
            transport.close()

    asyncio.run(main())


def test_v2c_client_refused_set_names_the_snmp_error():
    async def body(driver, sim):
        with pytest.raises(DeviceException, match="notWritable") as err:
            await driver._set("1.3.6.1.2.1.33.1.2.1.0", 3)  # upsBatteryStatus is read-only
        assert err.value.code == 17
        assert (await driver.command("cancel")) == {"countdown_s": -1}

    run_with_sim(build(version="2c", community="suite-ro"), body)


def run_with_sim(cfg, body):
    async def main():
        host = SimHost(cfg)
        await host.start(control=False)
        driver = kinds.driver_class("ups_snmp")("ups", cfg.devices["ups"])
        try:
            await driver.open()
            await body(driver, host.sims["ups"])
        finally:
            await driver.close()
            await host.stop()

    asyncio.run(main())


def test_snmp_v2c_alarm_table_is_one_getbulk_and_paging_gives_the_same_rows():
    # What a poll costs is measured in bench/ups_poll_cpu.py (issue 16: <= 2 ms CPU); here, what makes
    # it cheap: one datagram a poll on mains, one more for the whole alarm table on battery.
    async def body(driver, sim):
        await driver.poll()
        before = driver.counters["requests"]
        await driver.poll()
        assert driver.counters["requests"] - before == 1, "a poll on mains: one GET"
        sim.model.mains_fail()
        v = await wait_until_async(polled(driver, on_battery=True), 5.0, interval=0.05, what="battery")
        assert {"on_battery", "input_bad"} <= set(v["snmp_alarms"])
        before = driver.counters["requests"]
        await driver.poll()
        assert driver.counters["requests"] - before == 2, "a poll on battery: one GET, one GETBULK"
        whole = await driver.v2c.walk(ALARM_DESCR, 64)
        paged = await driver.v2c.walk(ALARM_DESCR, 64, rows_per_request=1)
        assert whole == paged and len(whole) >= 2
        with pytest.raises(FrameError, match="more than 1 rows"):
            await driver.v2c.walk(ALARM_DESCR, 1)

    run_with_sim(build(version="2c", community="suite-ro"), body)
