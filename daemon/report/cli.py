"""``suitemon report -c FILE --from DATE --to DATE [--format html|pdf|csv] [-o PATH]``."""

from __future__ import annotations

import sys
from pathlib import Path

import structlog

from suitemon.daemon.cli_support import add_config_option

log = structlog.get_logger("suitemon.report")


def add_parser(sub) -> None:
    s = sub.add_parser("report", help="governance report from the journal (HTML, PDF, CSV)")
    add_config_option(s)
    s.add_argument("--from", dest="first", metavar="DATE", help="first day (YYYY-MM-DD, site time)")
    s.add_argument("--to", dest="last", metavar="DATE", help="last day, included")
    s.add_argument(
        "--previous-month",
        action="store_true",
        help="the last whole calendar month (site time), instead of --from/--to (for a timer)",
    )
    s.add_argument(
        "--publish",
        action="store_true",
        help="also publish the headline figures, retained, on <base>/<site>/report/summary",
    )
    s.add_argument(
        "--format",
        choices=["html", "pdf", "csv"],
        default="html",
        help="html: one self-contained file; pdf: the same as PDF; csv: a file per table (default html)",
    )
    s.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="file (html, pdf) or directory (csv; or an existing directory for any format); "
        "default report-<site>-<from>-<to>.<ext>",
    )
    s.set_defaults(fn=cmd_report)


def cmd_report(args) -> int:
    from suitemon.daemon.cli_support import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, load_or_exit
    from suitemon.daemon.report.period import PeriodError, parse_period, previous_month

    cfg = load_or_exit(args.config)
    try:
        if args.previous_month == bool(args.first or args.last) or bool(args.first) != bool(args.last):
            raise PeriodError("give --from DATE --to DATE, or --previous-month")
        if args.previous_month:
            period = previous_month(cfg.site.timezone)
        else:
            period = parse_period(args.first, args.last, cfg.site.timezone)
    except PeriodError as err:
        print(f"report: {err}", file=sys.stderr)
        return EXIT_CONFIG
    path = cfg.state.dir / "journal.sqlite3"
    if not path.exists():
        print(f"{path}: no journal here (has the daemon run with this config?)", file=sys.stderr)
        return EXIT_FAIL
    chain_key_file, _, _ = cfg.journal.paths(cfg.state.dir)
    try:
        chain_key = chain_key_file.read_bytes() if chain_key_file.exists() else None
    except OSError as err:
        # Still report: the footer then says the keyed rows could not be verified.
        print(
            f"{chain_key_file}: cannot read the chain key ({err.strerror}); the chain is reported unverified",
            file=sys.stderr,
        )
        chain_key = None
    try:  # matplotlib, Jinja2 (and WeasyPrint for PDF): the optional extra, loaded only when needed
        from suitemon.daemon.report import render
        from suitemon.daemon.report.build import build_report
    except ImportError as err:
        print(f"report: {err}; install the extra: pip install 'suitemon[report]'", file=sys.stderr)
        return EXIT_FAIL
    report = build_report(cfg, period, journal_path=path, chain_key=chain_key)
    ext = {"html": "html", "pdf": "pdf", "csv": ""}[args.format]
    default = f"report-{cfg.site.id}-{period.first_day}-{period.last_day}" + (f".{ext}" if ext else "")
    out = Path(args.output or default)
    if out.is_dir() and args.format != "csv":
        out = out / default
    try:
        if args.format == "html":
            out.write_text(render.html(report), encoding="utf-8")
        elif args.format == "pdf":
            render.pdf(report, out)
        else:
            render.csv_dir(report, out)
    except ImportError as err:  # WeasyPrint or its Pango libraries
        print(f"report: PDF needs WeasyPrint and Pango ({err}); HTML and CSV work without", file=sys.stderr)
        return EXIT_FAIL
    except OSError as err:
        print(f"{out}: cannot write the report: {err}", file=sys.stderr)
        return EXIT_FAIL
    v = report.verification
    print(
        f"{out}: {report.events_in_period} events from {period.label()}; journal head seq {v.head_seq}, "
        f"chain {'verified' if v.ok else 'NOT verified: ' + v.detail}"
    )
    if args.publish:
        from suitemon.daemon.report.publish import PublishFailed, publish_summary

        try:
            where = publish_summary(cfg, report)
            print(f"summary published (retained) on {where}")
        except (PublishFailed, OSError) as err:
            print(f"report: summary not published: {err}", file=sys.stderr)
            log.error("report summary not published", error=str(err))
            return EXIT_FAIL
    # An unverified chain still gives a report (it may be the evidence of the damage), but not success.
    return EXIT_OK if v.ok and not report.unreadable_rows else EXIT_FAIL
