"""Issue 15 item 6: idle connections and bogus associations against the DICOM receiver.

Probes: five idle TCP connections (no A-ASSOCIATE-RQ) used to lock the allowed scanner
out for ~30 s; 300 bogus associations used to add 300 journal rows in 2.4 s.
"""

from __future__ import annotations

import socket
import time

from dicom_helpers import SCANNER_AE, dcmtk, dicom_section, target
from helpers import wait_until
from pynetdicom import AE

from suitemon.daemon.dicom.rejections import Rejections
from suitemon.daemon.journal import Journal
from suitemon.simulators.scanner import echo


def idle_sockets(port: int, sources: list[str]) -> list[socket.socket]:
    """Connect and say nothing (a port scanner, a stuck client, an attacker)."""
    out = []
    for src in sources:
        s = socket.socket()
        s.bind((src, 0))  # the whole of 127/8 is loopback: another 'host' without a network
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        out.append(s)
    return out


def closed_by_peer(s: socket.socket) -> bool:
    try:
        s.settimeout(0.05)
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def rejected_rows(suite) -> list[dict]:
    j = Journal(
        suite.tmp / "state" / "journal.sqlite3",
        chain_key=(suite.tmp / "state" / "journal-chain.key").read_bytes(),
    )
    try:
        return [e.data for e in j.events_of_type("dicom.association_rejected")]
    finally:
        j.close()


def test_idle_sockets_do_not_lock_out_the_scanner(make_suite, watcher):
    # request_timeout_s leaves room for a loaded machine between the connects and the checks below.
    suite = make_suite(extra=dicom_section(request_timeout_s=4))
    suite.start_daemon(watcher)
    t = target(suite)
    one_host = idle_sockets(t["port"], ["127.0.0.2"] * 5)
    many_hosts = idle_sockets(t["port"], [f"127.0.0.{i}" for i in range(3, 8)])
    try:
        time.sleep(0.3)  # the daemon has seen them all
        # Two may wait per address: the other three from 127.0.0.2 were closed at once.
        assert sum(closed_by_peer(s) for s in one_host) == 3
        t0 = time.monotonic()
        assert echo(**t) == "0x0000"  # pynetdicom as the scanner, while ten idle sockets are open
        r = dcmtk("echoscu", "-aet", SCANNER_AE, "-aec", "SUITEMON", "127.0.0.1", str(t["port"]))
        assert r.returncode == 0, r.stdout + r.stderr
        assert time.monotonic() - t0 < 4, "the scanner got in only after the idle sockets timed out"
        # And nobody waits longer than request_timeout_s for an association request.
        wait_until(
            lambda: all(closed_by_peer(s) for s in one_host + many_hosts),
            10,
            what="idle sockets closed after request_timeout_s",
        )
    finally:
        for s in one_host + many_hosts:
            s.close()
    assert suite.procs[0].terminate() == 0
    rows = rejected_rows(suite)
    categories = {(r["address"], r["category"]) for r in rows}
    assert ("127.0.0.2", "pending") in categories and ("127.0.0.2", "no_request") in categories
    assert sum(r["count"] for r in rows if r["category"] == "no_request") == 7  # 2 + 5 that never asked


def test_300_bogus_associations_add_a_few_journal_rows(make_suite, watcher):
    suite = make_suite(extra=dicom_section())
    d = suite.start_daemon(watcher)
    port = target(suite)["port"]
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context("1.2.840.10008.1.1")
    t0 = time.monotonic()
    # Every attempt must end refused, never established. On a loaded machine an attempt now and then
    # ends aborted instead of with the A-ASSOCIATE-RJ (seen in 3 full suite runs, about 1 attempt in
    # 250, never alone; the cause is not shown yet, docs/dicom.md): never established, so the gate
    # held; it may or may not have counted it, so it is retried and allowed for, within a small bound.
    rejected = aborted = 0
    while rejected < 300:
        assoc = ae.associate("127.0.0.1", port, ae_title="SUITEMON")
        assert not assoc.is_established
        if assoc.is_rejected:
            rejected += 1
            continue
        assert assoc.is_aborted, getattr(assoc.acceptor, "primitive", None)
        aborted += 1
        assert aborted <= 10, f"{aborted} aborted attempts by {rejected} rejections"
    took = time.monotonic() - t0
    watcher.wait_for(
        lambda w: (
            (s := w.json_of(suite.topic("status")))
            and s["counters"].get("dicom.associations.rejected", 0) >= 300
        ),
        15,
        what="300 rejections counted",
    )
    assert echo(**target(suite)) == "0x0000"
    assert d.terminate() == 0  # the counted rest is journaled at stop, not lost
    rows = rejected_rows(suite)
    assert len(rows) <= 3, rows
    assert 300 <= sum(r["count"] for r in rows) <= 300 + aborted
    assert (
        rows[0]["reason"] == "calling AE title 'INTRUDER' is not on the allow-list" and rows[0]["count"] == 1
    )
    print(f"300 bogus associations in {took:.1f} s -> {len(rows)} journal rows")


def test_rejections_are_journaled_once_per_peer_and_cause_per_minute():
    rows: list[dict] = []
    now = [0.0]
    r = Rejections(rows.append, clock=lambda: now[0])
    for i in range(50):
        r.add(f"AE{i % 7}", "10.0.0.9", "bogus", "calling_ae")
    r.add("X", "10.0.0.8", "other host", "calling_ae")
    assert [x["count"] for x in rows] == [1, 1]
    now[0] = 59.0
    r.tick()
    assert len(rows) == 2
    now[0] = 60.0
    r.tick()
    assert rows[2]["count"] == 49 and rows[2]["repeated"] and len(rows[2]["calling_ae_seen"]) == 5
    r.add("AE1", "10.0.0.9", "bogus", "calling_ae")  # still at it: counted in the next minute
    assert len(rows) == 3
    now[0] = 120.0
    r.tick()
    assert rows[3]["count"] == 1 and len(rows) == 4
