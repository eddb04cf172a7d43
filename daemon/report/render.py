"""Renderers: one self-contained HTML file (Jinja2, SVG inline), PDF of the same (WeasyPrint),
and one CSV file per table."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from suitemon.daemon.report.build import Report

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("suitemon.daemon.report", "templates"),
    # Everything from the journal is text to show, never markup: escape by default.
    autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


_env.filters["cell"] = _cell


def html(report: Report) -> str:
    generated = datetime.fromtimestamp(report.generated_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _env.get_template("report.html.j2").render(r=report, generated=generated)


def pdf(report: Report, out: Path) -> None:
    import logging

    import weasyprint  # imported here: HTML and CSV work without its native libraries

    # WeasyPrint warns once per SVG style property it parses with its HTML CSS rules (the drawing
    # is still right) and per repeated glyph id: hundreds of lines that would hide a real error.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    # base_url None and no url_fetcher needed: the document has no external references (SVG inline).
    weasyprint.HTML(string=html(report), base_url=None).write_pdf(out)


def csv_dir(report: Report, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for s in report.sections:
        for t in s.tables:
            path = out / f"{t.name}.csv"
            with path.open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(t.columns)
                w.writerows([["" if v is None else v for v in row] for row in t.rows])
            written.append(path)
    v = report.verification
    path = out / "journal_verification.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["journal", "verified", "head_seq", "head_hash", "detail", "events_in_period", "unreadable_rows"]
        )
        w.writerow(
            [
                report.journal_path,
                v.ok,
                v.head_seq,
                v.head_hash,
                v.detail,
                report.events_in_period,
                report.unreadable_rows,
            ]
        )
    written.append(path)
    return written
