"""Plots as inline SVG text: matplotlib with the Agg backend, nothing fetched, fonts as paths.

Each function takes plain values from a section's tables, so what is drawn is what the
tables (and the CSV files) say.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: a daemon host has neither
import matplotlib.pyplot as plt

matplotlib.rcParams.update(
    {
        "svg.fonttype": "none",  # text stays text: smaller files, searchable PDF
        "svg.hashsalt": "suitemon-report",  # stable element ids: the same journal gives the same file
        "font.size": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)

PRIORITY_COLOURS = {"high": "#c62828", "medium": "#ef8f00", "low": "#1e88e5"}


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "suitemon"})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: it goes inline in HTML


_ID = re.compile(r'(\bid="|xlink:href="#|href="#|url\(#)([^")]+)')


def scoped(svg: str, prefix: str) -> str:
    """Prefix every id (and every reference to one) so several figures can share one HTML page:
    matplotlib numbers its ids from 1 in each file."""
    return _ID.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


def stacked_bars(
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    ylabel: str,
    colours: dict[str, str] | None = None,
) -> str:
    fig, ax = plt.subplots(figsize=(7, 2.4))
    bottom = [0.0] * len(labels)
    for name, values in series.items():
        ax.bar(range(len(labels)), values, bottom=bottom, label=name, color=(colours or {}).get(name))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(labels)), labels, rotation=60 if len(labels) > 10 else 0, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, ncols=len(series))
    return _svg(fig)


MAX_POINTS = 300  # per group: beyond this the points are a blot and the SVG megabytes


def distribution(groups: dict[str, Sequence[float]], xlabel: str) -> str:
    """One horizontal box per group with its points on top while few: small samples stay visible."""
    names = [g for g, v in groups.items() if v]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(1, len(names))))
    if names:
        ax.boxplot([groups[n] for n in names], orientation="horizontal", widths=0.5, showfliers=False)
        for i, n in enumerate(names, start=1):
            if len(groups[n]) > MAX_POINTS:
                continue
            ax.plot(groups[n], [i] * len(groups[n]), "o", ms=3, alpha=0.6, color="#37474f")
        ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_xlabel(xlabel)
    return _svg(fig)


def points_against_levels(
    groups: dict[str, Sequence[float]], levels: dict[str, Sequence[float]], ylabel: str
) -> str:
    """Values per group (e.g. administered activity per exam) with each one's reference level."""
    names = list(groups)
    labelled = False
    fig, ax = plt.subplots(figsize=(7, 2.6))
    for i, n in enumerate(names):
        vals = groups[n]
        lims = list(levels.get(n, [None] * len(vals)))
        over = [lim is not None and v > lim for v, lim in zip(vals, lims, strict=True)]
        if len(vals) > MAX_POINTS:
            ax.boxplot([vals], positions=[i], widths=0.4, showfliers=False)
        else:
            ax.scatter([i] * len(vals), vals, s=12, c=["#c62828" if o else "#2e7d32" for o in over], zorder=3)
        shown = sorted({lim for lim in lims if lim is not None})
        if shown:
            ax.scatter(
                [i] * len(shown),
                shown,
                marker="_",
                s=300,
                color="#37474f",
                zorder=2,
                label="reference level" if not labelled else None,
            )
            labelled = True
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(ylabel)
    if labelled:
        ax.legend(frameon=False)
    return _svg(fig)


def lines(x_labels: Sequence[str], series: dict[str, Sequence[float | None]], ylabel: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 2.4))
    for name, values in series.items():
        ax.plot(
            range(len(x_labels)),
            [float("nan") if v is None else v for v in values],
            marker="o",
            ms=3,
            label=name,
        )
    ax.set_xticks(range(len(x_labels)), x_labels, rotation=60 if len(x_labels) > 10 else 0, ha="right")
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(frameon=False, ncols=min(4, len(series)))
    return _svg(fig)
