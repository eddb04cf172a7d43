"""``suitemon report``: governance reports (alarm load, call bells, doses, radiation, power,
devices) computed from the journal alone and rendered as HTML, PDF or CSV.

Each section module turns journal events into plain tables (lists of rows), so a figure in
the report can be checked against the journal without the renderer; plots and templates
only draw those tables.

Nothing is imported here: the package is loaded for its sub-command on every ``suitemon`` start,
and its plotting and PDF libraries are the optional ``report`` extra (a site without it still runs).
"""
