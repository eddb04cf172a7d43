"""The spool: complete files or none, flushed by policy, refused (0xA700) when the disk is full.

Disk-full is real: a 1 MiB tmpfs is mounted for the test (we run as root, so does CI) and
unmounted afterwards; where mounting is not permitted those tests are skipped with the
reason, and the write-failure seam test below still covers the refusal path.
"""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import time

import pytest
from dicom_helpers import dicom_section, target, wait_event, wait_summary
from pynetdicom.dsutils import create_file_meta, encode_file_meta  # what event.encoded_dataset() uses

from suitemon.daemon.dicom.service import study_ref
from suitemon.daemon.dicom.spool import Spool, SpoolError, SpoolFull, file_meta_bytes
from suitemon.simulators import dicom_study as st
from suitemon.simulators.scanner import send


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(
            f"cannot mount a 1 MiB tmpfs here ({r.stderr.strip() or r.returncode}); "
            "the injected write failure test covers the refusal path"
        )
    yield mnt
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def dataset_bytes(n: int) -> io.BytesIO:
    return io.BytesIO(b"\x08\x00\x16\x00UI\x02\x001\x00" + b"\x00" * n)


def test_file_meta_is_what_pynetdicom_would_write():
    fm = create_file_meta(
        sop_class_uid=st.RP_DOSE_SR, sop_instance_uid="1.2.3.44", transfer_syntax="1.2.840.10008.1.2.1"
    )
    assert file_meta_bytes(
        st.RP_DOSE_SR, "1.2.3.44", "1.2.840.10008.1.2.1"
    ) == b"\x00" * 128 + b"DICM" + encode_file_meta(fm)


class Recording(Spool):
    """The write seam, observed (and optionally failing) - a test double of the disk, not of DICOM."""

    def __init__(self, *a, fail: int | None = None, **kw):
        super().__init__(*a, **kw)
        self.flushes: list[bool] = []
        self.fail = fail

    def _write(self, path, chunks, flush):
        self.flushes.append(flush)
        if self.fail is not None:
            with open(path, "wb") as f:
                f.write(b"half a file")
            raise OSError(self.fail, os.strerror(self.fail))
        super()._write(path, chunks, flush)


@pytest.mark.parametrize(
    "policy,expected", [("reports", [False, True]), ("all", [True, True]), ("none", [False, False])]
)
def test_fsync_policy(tmp_path, policy, expected):
    sp = Recording(tmp_path, fsync=policy)
    a = sp.store(st.CT_IMAGE, "1.2.3.1", "1.2.840.10008.1.2.1", dataset_bytes(100))
    b = sp.store(st.XRAY_DOSE_SR, "1.2.3.2", "1.2.840.10008.1.2.1", dataset_bytes(100))
    assert sp.flushes == expected
    assert a.read_bytes()[128:132] == b"DICM" and a.name < b.name
    assert sorted(p.name for p in sp.incoming.iterdir()) == [a.name, b.name]  # no temp files left


@pytest.mark.parametrize("err,cls", [(errno.EIO, SpoolError), (errno.ENOSPC, SpoolFull)])
def test_a_failed_write_raises_and_leaves_nothing_behind(tmp_path, err, cls):
    sp = Recording(tmp_path, fail=err)
    with pytest.raises(cls):
        sp.store(st.CT_IMAGE, "1.2.3.1", "1.2.840.10008.1.2.1", dataset_bytes(100))
    assert list(sp.incoming.iterdir()) == []


def test_free_space_reserve_refuses_before_writing(tmp_path):
    sp = Spool(tmp_path, min_free_bytes=10**18)
    with pytest.raises(SpoolFull, match="MB are kept free"):
        sp.store(st.CT_IMAGE, "1.2.3.1", "1.2.840.10008.1.2.1", dataset_bytes(100))
    assert list(sp.incoming.iterdir()) == []


def test_real_enospc_on_a_full_disk(tiny_disk):
    sp = Spool(tiny_disk, fsync="all")
    sp.store(st.CT_IMAGE, "1.2.3.1", "1.2.840.10008.1.2.1", dataset_bytes(400_000))
    with pytest.raises(SpoolFull, match="spool disk full"):
        for i in range(3):
            sp.store(st.CT_IMAGE, f"1.2.3.{i + 2}", "1.2.840.10008.1.2.1", dataset_bytes(400_000))
    assert not [p for p in sp.incoming.iterdir() if p.name.startswith(".")]


def test_recover_finish_reject_purge(tmp_path):
    sp = Spool(tmp_path)
    (sp.incoming / ".0001-1.dcm.part").write_bytes(b"interrupted")
    a = sp.store(st.CT_IMAGE, "1.2.3.1", "1.2.840.10008.1.2.1", dataset_bytes(10))
    b = sp.store(st.CT_IMAGE, "1.2.3.2", "1.2.840.10008.1.2.1", dataset_bytes(10))
    rec = Spool(tmp_path).recover()
    assert rec.files == [a, b] and rec.partial_removed == 1
    moved = sp.reject(a, "truncated: test", {"calling_ae": "X"})
    assert json.loads((sp.unparseable / f"{a.name}.reason.json").read_text())["reason"] == "truncated: test"
    assert moved.exists() and not a.exists()
    assert sp.finish([b], keep_s=60) == 1 and (sp.processed / b.name).exists()
    assert sp.purge_processed(60, now=time.time() + 120) == 1


# -- through the daemon -----------------------------------------------------------------------------
def test_spool_full_answers_out_of_resources_raises_a_high_alarm_and_recovers(tiny_disk, make_suite, watcher):
    suite = make_suite(extra=dicom_section(spool_dir=str(tiny_disk), min_free_mb=0, study_idle_s=0.5))
    suite.start_daemon(watcher)
    spec = st.StudySpec(ct_slices=4, pet_slices=0, ct_report=False, rp_report=False)  # 4 x 512 KiB > 1 MiB
    result = send(st.build_study(spec), **target(suite))
    assert result.sent == 4
    assert result.statuses["0xA700"] >= 2 and result.ok >= 1, result.statuses  # stored ones answered success
    alarm_t = suite.topic("alarm", "dicom.spool_fault")
    rec = watcher.wait_for(lambda w: w.json_of(alarm_t), 10, what="spool alarm")
    assert (rec["priority"], rec["kind"], rec["state"], rec["condition"]) == (
        "high",
        "technical",
        "active",
        "present",
    )
    assert "0xA700" in rec["message"] and rec["details"]["disk_full"] is True
    failed = wait_event(watcher, suite.site, "dicom.store_failed")
    assert failed["data"]["status"] == "0xA700" and failed["data"]["calling_ae"] == "PETCT1"
    # What was stored is not lost: its study completes and its files leave the disk afterwards.
    s = wait_summary(watcher, suite.site, spec.study_uid)
    assert s["instances"]["ct_images"] == result.ok
    # The scanner resends once there is room; the condition ends, the latched alarm waits for a person.
    small = st.StudySpec(ct_slices=1, ct_rows=64, ct_cols=64, pet_slices=0, ct_report=False, rp_report=False)
    again = send(st.build_study(small), **target(suite))
    assert again.ok == 1
    watcher.wait_for(lambda w: w.json_of(alarm_t)["condition"] == "absent", 10, what="condition ended")
    assert watcher.json_of(alarm_t)["state"] == "active"
    watcher.publish(
        suite.topic("cmd", "engineer", "reset"), {"alarm_id": "dicom.spool_fault", "note": "disk freed"}
    )
    watcher.wait_for(lambda w: w.json_of(alarm_t)["state"] == "closed", 10, what="reset")
    assert study_ref(spec.study_uid)  # the study's alarms, had there been any, would carry this key


def test_free_space_reserve_protects_the_journal_disk(make_suite, watcher):
    suite = make_suite(extra=dicom_section(min_free_mb=10**12))
    suite.start_daemon(watcher)
    spec = st.StudySpec(ct_slices=2, ct_rows=32, ct_cols=32, pet_slices=0, ct_report=False, rp_report=False)
    result = send(st.build_study(spec), **target(suite))
    assert result.statuses == {"0xA700": 2}
    rec = watcher.wait_for(lambda w: w.json_of(suite.topic("alarm", "dicom.spool_fault")), 10, what="alarm")
    assert "kept free for the journal" in rec["details"]["reason"]
    status = watcher.wait_for(
        lambda w: (
            (st_ := w.json_of(suite.topic("status")))
            and st_.get("counters", {}).get("dicom.store.failed") == 2
            and st_
        ),
        15,
        what="counter",
    )
    assert status["counters"].get("dicom.instances.received", 0) == 0
