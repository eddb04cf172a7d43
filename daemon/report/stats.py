"""Order statistics used by every section. One definition, written down in docs/decisions.md:
the p-th percentile interpolates linearly between the closest ranks (numpy's default "linear",
Hyndman and Fan type 7), so a median of an even count is the mean of the middle two."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    h = (len(xs) - 1) * p / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def rnd(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def pct(part: float, whole: float, digits: int = 1) -> float | None:
    return None if not whole else round(100.0 * part / whole, digits)
