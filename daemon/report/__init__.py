"""``suitemon report``: governance reports (alarm load, call bells, doses, radiation, power,
devices) computed from the journal alone and rendered as HTML, PDF or CSV.

Each section module turns journal events into plain tables (lists of rows), so a figure in
the report can be checked against the journal without the renderer; plots and templates
only draw those tables.
"""

from suitemon.daemon.report.build import Report, build_report
from suitemon.daemon.report.period import Period, parse_period

__all__ = ["Report", "build_report", "Period", "parse_period"]
