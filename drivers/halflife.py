"""Radionuclide half-lives and the decay law, for dose records, checks and simulators.

The table is the one in the domain notes (section 6); F-18 is the 6586.2 s that
Siemens and GE write in their headers. A half-life the source itself states (a DICOM
header's RadionuclideHalfLife, a dispenser's own register) is preferred over the
table: it is what the source used for its own figures.
"""

from __future__ import annotations

import math

HALF_LIFE_S: dict[str, float] = {
    "F-18": 6586.2,  # 109.77 min
    "Ga-68": 67.83 * 60,
    "C-11": 20.385 * 60,
    "N-13": 9.965 * 60,
    "O-15": 122.24,
    "Cu-64": 12.7 * 3600,
    "Zr-89": 78.4 * 3600,
}


class UnknownRadionuclide(KeyError):
    """Neither the source nor the table gives a half-life for this radionuclide."""


def half_life_s(radionuclide: str, stated_s: float | None = None) -> float:
    """The half-life to use: the source's own value when it gives a positive one, else the table."""
    if stated_s is not None and math.isfinite(stated_s) and stated_s > 0:
        return float(stated_s)
    try:
        return HALF_LIFE_S[radionuclide]
    except KeyError as err:
        raise UnknownRadionuclide(radionuclide) from err


def decay_factor(elapsed_s: float, t_half_s: float) -> float:
    """A(t0 + elapsed) / A(t0) = 2 ** (-elapsed / T_half). Negative elapsed corrects backwards."""
    if t_half_s <= 0:
        raise ValueError("half-life must be positive")
    return math.pow(2.0, -elapsed_s / t_half_s)  # what ** computes; typed float, not Any


def decay(activity: float, from_t: float, to_t: float, t_half_s: float) -> float:
    """Activity known at ``from_t`` (epoch seconds) corrected to ``to_t``: A(t) = A0 * 2 ** (-(t - t0) / T)."""
    return activity * decay_factor(to_t - from_t, t_half_s)


__all__ = ["HALF_LIFE_S", "UnknownRadionuclide", "decay", "decay_factor", "half_life_s"]
