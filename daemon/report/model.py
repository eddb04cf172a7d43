"""What a section hands to the renderers: tables of plain values and ready-drawn figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    name: str  # file-safe: becomes <name>.csv
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    # Long listings: the HTML and PDF show the first rows, the CSV all of them.
    shown: int = 200
    # Cells to mark (row index, column index) -> css class, e.g. a week without a bell-test pass.
    marks: dict[tuple[int, int], str] = field(default_factory=dict)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


@dataclass
class Figure:
    name: str
    title: str
    svg: str

    def __post_init__(self) -> None:
        from suitemon.daemon.report.plots import scoped

        self.svg = scoped(self.svg, self.name)


@dataclass
class Section:
    id: str
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Headline figures (label -> value), shown first and kept for the monthly summary.
    figures_of_note: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)
