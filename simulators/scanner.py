"""The PET-CT scanner, simulated: a DICOM SCU (pynetdicom) that sends a synthetic study.

Used three ways: ``suitemon scanner-sim send`` (engineers), the simulator host's
``scanner`` simulator with the ``send_study`` and ``echo`` actions (scenarios, tests), and
``suitemon scanner-sim write`` (files for DCMTK's storescu in the benchmark).
Options come from ``[dicom.sim]``: ``calling_ae`` (default "PETCT1"), ``host``/``port``/
``called_ae`` (default: the receiver's own settings).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from suitemon.simulators import dicom_study as st
from suitemon.simulators.base import SimError, Simulator

SENT_CLASSES = [
    st.CT_IMAGE,
    st.ENHANCED_CT,
    st.PET_IMAGE,
    st.ENHANCED_PET,
    st.XRAY_DOSE_SR,
    st.ENHANCED_SR,
    st.COMPREHENSIVE_SR,
    st.RP_DOSE_SR,
    st.SECONDARY_CAPTURE,
]


@dataclass
class SendResult:
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return self.statuses.get("0x0000", 0)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "ok": self.ok, "statuses": dict(self.statuses)}


class SendError(Exception):
    pass


def send(
    datasets: Iterable[Dataset],
    *,
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str,
    timeout_s: float = 30.0,
) -> SendResult:
    """One association: C-STORE every dataset (in order), then release. Raises SendError if refused."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for uid in SENT_CLASSES:
        ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not established"
        raise SendError(f"association to {called_ae}@{host}:{port} {why}")
    result = SendResult()
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            result.sent += 1
            code = f"0x{status.Status:04X}" if status and "Status" in status else "no response"
            result.statuses[code] += 1
    finally:
        if assoc.is_established:
            assoc.release()
    return result


def echo(*, host: str, port: int, called_ae: str, calling_ae: str) -> str:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise SendError(f"association to {called_ae}@{host}:{port} refused")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    return f"0x{status.Status:04X}" if status and "Status" in status else "no response"


# -- study specs from simple arguments (CLI flags, control actions) --------------------------------
def _minutes_ago(v: float) -> datetime:
    return (datetime.now(UTC) - timedelta(minutes=float(v))).replace(microsecond=0)


# argument name -> (StudySpec field, converter)
SPEC_ARGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "ct": ("ct_slices", int),
    "pet": ("pet_slices", int),
    "ct_size": ("ct_rows", int),
    "pet_size": ("pet_rows", int),
    "activity": ("activity_mbq", float),
    "header_activity": ("header_activity_mbq", float),
    "injected_min_ago": ("injected_at", _minutes_ago),
    "header_shift_min": ("header_start_shift_min", float),
    "report_shift_min": ("report_start_shift_min", float),
    "accession": ("accession", str),
    "patient_id": ("patient_id", str),
    "weight": ("weight_kg", float),
    "protocol": ("protocol", str),
    "pet_class": ("pet_class", str),
    "snomed": ("snomed", str),
    "meanings": ("meanings", str),
    "ct_report": ("ct_report", bool),
    "rp_report": ("rp_report", bool),
    "study_uid": ("study_uid", str),
    "timezone": ("timezone", str),
    # As real scanners do (docs/dicom.md): cumulative CT reports, unit spellings, StartTime-only headers, ...
    "ct_report_mode": ("ct_report_mode", str),
    "dlp_unit": ("dlp_unit", str),
    "header_start": ("header_start", str),
    "header_in_mbq": ("header_activity_in_mbq", bool),
    "scan_delay_min": ("scan_delay_min", float),
    "float_values": ("float_values", bool),
}


def spec_from_args(**kw: Any) -> st.StudySpec:
    fields: dict[str, Any] = {}
    for k, v in kw.items():
        if v is None:
            continue  # not given: the spec's default
        if k == "exposures":  # [[type, ctdivol, dlp], ...]
            fields["exposures"] = tuple(st.CtExposure(str(t), float(c), float(d)) for t, c, d in v)
            continue
        if k not in SPEC_ARGS:
            raise SimError(
                f"unknown study argument '{k}'; known: {', '.join(sorted([*SPEC_ARGS, 'exposures']))}"
            )
        name, conv = SPEC_ARGS[k]
        fields[name] = conv(v)
    if "ct_rows" in fields:
        fields["ct_cols"] = fields["ct_rows"]
    if "pet_rows" in fields:
        fields["pet_cols"] = fields["pet_rows"]
    if fields.get("pet_class", "classic") not in ("classic", "enhanced"):
        raise SimError("pet_class is 'classic' or 'enhanced'")
    if fields.get("ct_report_mode", "single") not in ("single", "cumulative"):
        raise SimError("ct_report_mode is 'single' or 'cumulative'")
    if fields.get("header_start", "datetime") not in ("datetime", "time_only"):
        raise SimError("header_start is 'datetime' or 'time_only'")
    return st.StudySpec(**fields)


def truth(spec: st.StudySpec) -> dict[str, Any]:
    """What the simulated scanner did, for tests and the engineer's console."""
    return {
        "study_uid": spec.study_uid,
        "accession": spec.accession,
        "instances": spec.ct_slices
        + (min(spec.pet_slices, 1) if spec.pet_class == "enhanced" else spec.pet_slices)
        + (len(spec.exposures) if spec.ct_report_mode == "cumulative" else 1) * int(spec.ct_report)
        + int(spec.rp_report),
        "activity_mbq": spec.activity_mbq,
        "header_activity_mbq": spec.activity_mbq
        if spec.header_activity_mbq is None
        else spec.header_activity_mbq,
        "injected_at": spec.when_injected().isoformat().replace("+00:00", "Z"),
        "dlp_total_mgycm": spec.total_dlp(),
        "exposures": [[e.acquisition_type, e.ctdivol_mgy, e.dlp_mgycm] for e in spec.exposures],
    }


class ScannerSimulator(Simulator):
    def __init__(self, sim_id: str, cfg):
        super().__init__(sim_id, cfg.dicom)
        d = cfg.dicom
        self.target = {
            "host": str(self.options.get("host", d.bind if d.bind not in ("0.0.0.0", "::") else "127.0.0.1")),
            "port": int(self.options.get("port", d.port)),
            "called_ae": str(self.options.get("called_ae", d.ae_title)),
            "calling_ae": str(self.options.get("calling_ae", "PETCT1")),
        }
        self.actions.update({"send_study": self.send_study, "echo": self.echo})

    async def send_study(self, calling_ae: str | None = None, **kw: Any) -> dict[str, Any]:
        spec = spec_from_args(**kw)
        target = dict(self.target, calling_ae=calling_ae or self.target["calling_ae"])
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, lambda: send(st.build_study(spec), **target))
        except SendError as err:
            raise SimError(str(err)) from None
        return {**result.as_dict(), **truth(spec)}

    async def echo(self, calling_ae: str | None = None) -> str:
        target = dict(self.target, calling_ae=calling_ae or self.target["calling_ae"])
        try:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: echo(**target))
        except SendError as err:
            raise SimError(str(err)) from None


def from_config(cfg) -> Simulator | None:
    """The "scanner" row's ``sim_factory`` (daemon/kinds.py): the scanner exists in ``suitemon sim`` when [dicom] does."""
    return ScannerSimulator("scanner", cfg) if getattr(cfg, "dicom", None) is not None else None
