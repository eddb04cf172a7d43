"""Which administrations must be notified to the regulator: the CQC IR(ME)R criteria.

CQC, "IR(ME)R: notification codes, categories and criteria" (unintended exposure, all
modalities including nuclear medicine; see docs/decisions.md). A multiplication factor is
the total dose from the incident divided by the intended dose:

    code  intended effective dose      notifiable when the dose received is
    2.1   below 0.3 mSv                3 mSv or above (adult; 1 mSv for a child)
    2.2   0.3 mSv to 2.5 mSv           10 or more times the intended dose
    2.3   2.5 mSv to 10 mSv            25 mSv or above
    2.4   above 10 mSv                 2.5 or more times the intended dose

The bands meet without a gap (0.3 x 10 = 3, 2.5 x 10 = 25, 10 x 2.5 = 25), so which band
owns a boundary value does not change the outcome. A wrong radiopharmaceutical is
notifiable whatever the dose (CQC criteria for incorrect radiopharmaceutical
administration, 2023). These are regulatory facts, not site settings: they are code.
"""

from __future__ import annotations

from dataclasses import dataclass

ADULT_LOW_BAND_MSV = 3.0  # code 2.1; the dose record carries no age, see docs/decisions.md


@dataclass(frozen=True)
class Criterion:
    code: str  # CQC notification code
    text: str  # the criterion as a person reads it
    threshold_msv: float  # notifiable at or above this received dose


def criterion_for(intended_msv: float) -> Criterion:
    """The CQC criterion that applies to an exposure with this intended effective dose."""
    if intended_msv < 0.3:
        return Criterion(
            "2.1", "intended dose below 0.3 mSv: notifiable at 3 mSv or above (adult)", ADULT_LOW_BAND_MSV
        )
    if intended_msv <= 2.5:
        return Criterion(
            "2.2",
            "intended dose 0.3-2.5 mSv: notifiable at 10 or more times the intended dose",
            10.0 * intended_msv,
        )
    if intended_msv <= 10.0:
        return Criterion("2.3", "intended dose 2.5-10 mSv: notifiable at 25 mSv or above", 25.0)
    return Criterion(
        "2.4",
        "intended dose above 10 mSv: notifiable at 2.5 or more times the intended dose",
        2.5 * intended_msv,
    )


WRONG_RADIOPHARMACEUTICAL = Criterion(
    "wrong_radiopharmaceutical", "wrong radiopharmaceutical administered: notifiable whatever the dose", 0.0
)


__all__ = ["ADULT_LOW_BAND_MSV", "WRONG_RADIOPHARMACEUTICAL", "Criterion", "criterion_for"]
