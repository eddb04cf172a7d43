"""``suitemon scanner-sim`` (send or write a synthetic PET-CT study) and ``suitemon patient-ref``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from suitemon.daemon.cli_support import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, add_config_option, load_or_exit


def _study_flags(p) -> None:
    p.add_argument("--ct", type=int, help="CT slices (default 20)")
    p.add_argument("--pet", type=int, help="PET slices (default 20; frames of one instance if enhanced)")
    p.add_argument("--ct-size", type=int, help="CT matrix (default 512)")
    p.add_argument("--pet-size", type=int, help="PET matrix (default 192)")
    p.add_argument(
        "--pet-class",
        choices=["classic", "enhanced"],
        help="PET storage class: one instance per slice, or one multi-frame instance",
    )
    p.add_argument("--activity", type=float, help="administered activity, MBq (default 350)")
    p.add_argument("--header-activity", type=float, help="activity typed into the PET header, MBq")
    p.add_argument("--injected-min-ago", type=float, help="injection time, minutes before now (default 60)")
    p.add_argument("--header-shift-min", type=float, help="header start time minus true injection time")
    p.add_argument("--report-shift-min", type=float, help="dose report start time minus true injection time")
    p.add_argument("--accession", help="accession number (default: a generated one)")
    p.add_argument("--patient-id", help="hospital patient number (default: a generated one)")
    p.add_argument("--weight", type=float, help="patient weight, kg")
    p.add_argument("--protocol", help="protocol name written in the study")
    p.add_argument(
        "--snomed", choices=["SCT", "SRT"], help="coding scheme of the SNOMED codes in the dose report"
    )


def _spec(args):
    from suitemon.simulators.scanner import SPEC_ARGS, spec_from_args

    kw = {k: getattr(args, k, None) for k in SPEC_ARGS if hasattr(args, k)}
    return spec_from_args(**kw)


def cmd_send(args) -> int:
    cfg = load_or_exit(args.config)
    if cfg.dicom is None:
        print(f"{args.config}: no [dicom] section", file=sys.stderr)
        return EXIT_CONFIG
    from suitemon.simulators import dicom_study
    from suitemon.simulators.scanner import ScannerSimulator, SendError, send, truth

    sim = ScannerSimulator("scanner", cfg)
    target = dict(sim.target)
    for k in ("host", "port", "calling_ae", "called_ae"):
        if getattr(args, k, None) is not None:
            target[k] = getattr(args, k)
    spec = _spec(args)
    try:
        result = send(dicom_study.build_study(spec), **target)
    except (SendError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAIL
    print(json.dumps({**result.as_dict(), **truth(spec), "target": target}, indent=2))
    return EXIT_OK if result.ok == result.sent else EXIT_FAIL


def cmd_write(args) -> int:
    from suitemon.simulators import dicom_study
    from suitemon.simulators.scanner import truth

    spec = _spec(args)
    paths = dicom_study.write_study(spec, Path(args.directory))
    print(json.dumps({"files": len(paths), "directory": args.directory, **truth(spec)}, indent=2))
    return EXIT_OK


def cmd_patient_ref(args) -> int:
    cfg = load_or_exit(args.config)
    if cfg.dicom is None:
        print(f"{args.config}: no [dicom] section", file=sys.stderr)
        return EXIT_CONFIG
    from suitemon.daemon.pseudonym import load_or_create_key, patient_ref

    key_file = cfg.dicom.pseudonym_key_file or Path(cfg.state.dir) / "dicom-pseudonym.key"
    if not key_file.exists():
        print(f"{key_file}: no pseudonym key yet (the daemon creates it at its first start)", file=sys.stderr)
        return EXIT_FAIL
    print(patient_ref(args.patient_id, load_or_create_key(key_file)))
    return EXIT_OK


def cmd_accession_ref(args) -> int:
    cfg = load_or_exit(args.config)
    from suitemon.daemon.pseudonym import accession_ref, key_file, load_or_create_key

    path = key_file(cfg)
    if not path.exists():
        print(f"{path}: no pseudonym key yet (the daemon creates it at its first start)", file=sys.stderr)
        return EXIT_FAIL
    print(accession_ref(args.accession, load_or_create_key(path)))
    return EXIT_OK


def add_parser(sub) -> None:
    s = sub.add_parser("scanner-sim", help="simulated scanner: send or write a synthetic study")
    ssub = s.add_subparsers(dest="action", required=True)
    p = ssub.add_parser("send", help="send a study to the receiver in the config's [dicom] section")
    add_config_option(p)
    p.add_argument("--host", help="receiver host (default: [dicom.sim] host, else the receiver's bind)")
    p.add_argument("--port", type=int, help="receiver port (default: [dicom.sim] port, else [dicom] port)")
    p.add_argument(
        "--calling-ae", help="AE title to call from (default: [dicom.sim] calling_ae, else PETCT1)"
    )
    p.add_argument(
        "--called-ae", help="receiver's AE title (default: [dicom.sim] called_ae, else [dicom] ae_title)"
    )
    _study_flags(p)
    p.set_defaults(fn=cmd_send)
    p = ssub.add_parser("write", help="write a study as DICOM files (for storescu, PACS tests)")
    p.add_argument("directory", help="where to write the files (created if absent)")
    _study_flags(p)
    p.set_defaults(fn=cmd_write)

    s = sub.add_parser("patient-ref", help="print the pseudonymous patient_ref of a patient")
    add_config_option(s)
    s.add_argument("patient_id", help="the hospital patient number (never logged nor published)")
    s.set_defaults(fn=cmd_patient_ref)

    s = sub.add_parser("accession-ref", help="print the pseudonym published for an accession number")
    add_config_option(s)
    s.add_argument("accession", help="the RIS accession number (never logged nor published)")
    s.set_defaults(fn=cmd_accession_ref)
