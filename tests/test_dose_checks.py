"""Decay correction against hand-computed values, and each dose check at and around its limits."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO

from suitemon.daemon.doses.checks import administered_activity, run_checks
from suitemon.daemon.doses.config import DispensingConfig, Exam, ReferenceLevel, UptakeConfig
from suitemon.drivers.halflife import UnknownRadionuclide, decay, half_life_s

T0 = 1_800_000_000.0  # an epoch second; only differences matter

# (radionuclide, activity at t0, seconds later, expected) -- expected from bc -l:
#   400*e(-l(2)*3600/6586.2) = 273.8531678, 100*e(-l(2)*30/67.83) = 73.5969469, ...
DECAY_CASES = [
    ("F-18", 400.0, 6586.2, 200.0),  # one half-life (the header value 6586.2 s)
    ("F-18", 400.0, 2 * 109.77 * 60, 100.0),  # two half-lives, in minutes as the table gives them
    ("F-18", 400.0, 3600.0, 273.8531678),  # one hour of uptake
    ("F-18", 350.0, -600.0, 372.8136011),  # corrected backwards: 10 min before
    ("F-18", 1300.0, 5400.0, 736.4275359),
    ("Ga-68", 100.0, 67.83 * 60, 50.0),
    ("Ga-68", 100.0, 2 * 67.83 * 60, 25.0),
    ("Ga-68", 100.0, 30 * 60, 73.5969469),
]


@pytest.mark.parametrize("nuclide,a0,dt,expected", DECAY_CASES)
def test_decay_matches_hand_computed_values(nuclide, a0, dt, expected):
    assert decay(a0, T0, T0 + dt, half_life_s(nuclide)) == pytest.approx(expected, rel=1e-8)


def test_stated_half_life_is_preferred_and_bad_ones_fall_back_to_the_table():
    assert half_life_s("F-18", 6600.0) == 6600.0
    assert half_life_s("F-18", 0.0) == 6586.2
    assert half_life_s("F-18", None) == 6586.2
    assert half_life_s("Ga-68", float("nan")) == pytest.approx(4069.8)
    with pytest.raises(UnknownRadionuclide):
        half_life_s("Tc-99m")


def entry(**kw):
    """An FDG administration: 300 MBq prescribed for 10:00, drawn at 09:50 with its decay allowance."""
    base = dict(
        seq=1,
        job=1001,
        patient_ref="P1",
        accession="ACC1",
        exam="PETONC",
        operator=None,
        room="uptake1",
        room_number=1,
        weight_kg=90.0,
        radionuclide="F-18",
        radiopharmaceutical="FDG",
        prescribed_mbq=300.0,
        measured_at=T0 - 600,
        administered_at=T0,
        residual_mbq=None,
        residual_at=None,
        half_life_s=None,
        issues=[],
    )
    base["measured_mbq"] = decay(300.0, T0, T0 - 600, 6586.2)  # 320.4 MBq in the syringe at 09:50
    base.update(kw)
    return base


CFG = DispensingConfig(
    exams={
        "PETONC": Exam(
            radionuclide="F-18",
            radiopharmaceutical="FDG",
            reference_level=ReferenceLevel(rule="fixed", mbq=400),
        ),
        "PSMA": Exam(radionuclide="Ga-68", radiopharmaceutical="PSMA-11"),
    }
)


def outcome(e, cfg=CFG):
    act, checks, msv = run_checks(e, cfg)
    return act, {c.name: c.ok for c in checks}, {c.name: c for c in checks}, msv


def test_measured_is_decay_corrected_to_the_administration_and_residual_subtracted():
    e = entry(residual_mbq=3.0, residual_at=T0 + 120)
    act = administered_activity(e)
    assert act.measured_at_admin_mbq == pytest.approx(300.0)
    assert act.residual_at_admin_mbq == pytest.approx(3.0 * 2 ** (120 / 6586.2))
    assert act.administered_mbq == pytest.approx(300.0 - 3.0 * 2 ** (120 / 6586.2))


def test_a_good_administration_passes_every_check():
    _, ok, _, msv = outcome(entry(residual_mbq=2.0, residual_at=T0 + 60))
    assert ok == {
        "record": True,
        "tolerance": True,
        "reference_level": True,
        "notifiable": True,
        "radiopharmaceutical": True,
        "residual": True,
    }
    assert msv == pytest.approx(0.019 * (300.0 - 2.0 * 2 ** (60 / 6586.2)))


@pytest.mark.parametrize("factor,ok", [(1.099, True), (1.101, False), (0.901, True), (0.899, False)])
def test_tolerance_is_plus_minus_ten_percent(factor, ok):
    e = entry(measured_mbq=entry()["measured_mbq"] * factor)
    assert outcome(e)[1]["tolerance"] is ok


FIXED = ReferenceLevel(rule="fixed", mbq=400)
PER_KG = ReferenceLevel(rule="per_kg", mbq_per_kg=3.5)


def with_level(level: ReferenceLevel) -> DispensingConfig:
    exams = {
        **CFG.exams,
        "PETONC": Exam(radionuclide="F-18", radiopharmaceutical="FDG", reference_level=level),
    }
    return DispensingConfig(exams=exams)


@pytest.mark.parametrize(
    "level,mbq,weight,ok,limit",
    [
        (FIXED, 390.0, 120.0, True, 400.0),
        (FIXED, 410.0, 120.0, False, 400.0),
        (FIXED, 390.0, None, True, 400.0),  # a fixed rule needs no weight
        (PER_KG, 300.0, 80.0, False, 280.0),  # 3.5 x 80
        (PER_KG, 300.0, 90.0, True, 315.0),
        (
            PER_KG,
            450.0,
            130.0,
            True,
            455.0,
        ),  # a heavy patient on a per-kg exam is not over a hidden 400 MBq cap
    ],
)
def test_reference_level_is_the_exams_one_named_rule(level, mbq, weight, ok, limit):
    e = entry(prescribed_mbq=mbq, measured_mbq=decay(mbq, T0, T0 - 600, 6586.2), weight_kg=weight)
    _, oks, checks, _ = outcome(e, with_level(level))
    assert oks["reference_level"] is ok
    assert checks["reference_level"].details["rule"] == level.rule
    assert checks["reference_level"].details["limit_mbq"] == pytest.approx(limit)


def test_a_130_kg_patient_on_a_per_kg_exam_does_not_alarm_but_on_a_fixed_exam_does():
    # Before: "any" meant min(400, 3.5 x weight), so every patient over ~114 kg alarmed.
    e = entry(prescribed_mbq=440.0, measured_mbq=decay(440.0, T0, T0 - 600, 6586.2), weight_kg=130.0)
    assert outcome(e, with_level(PER_KG))[1]["reference_level"] is True
    assert outcome(e, with_level(FIXED))[1]["reference_level"] is False


def test_per_kg_without_weight_is_not_evaluated():
    _, oks, checks, _ = outcome(entry(weight_kg=None), with_level(PER_KG))
    assert oks["reference_level"] is None and "weight" in checks["reference_level"].message


def test_an_exam_without_a_reference_level_says_the_check_was_not_done():
    e = entry(
        radionuclide="Ga-68",
        radiopharmaceutical="PSMA-11",
        exam="PSMA",
        measured_mbq=decay(150.0, T0, T0 - 600, 67.83 * 60),
        prescribed_mbq=150.0,
    )
    _, oks, checks, _ = outcome(e)
    assert oks["reference_level"] is None and "no local reference level" in checks["reference_level"].message


@pytest.mark.parametrize(
    "prescribed,given,notifiable,code",
    [
        (300.0, 1300.0, False, "2.3"),  # intended 5.7 mSv: notifiable at 25 mSv; 24.7 mSv
        (300.0, 1320.0, True, "2.3"),  # 25.08 mSv
        (100.0, 990.0, False, "2.2"),  # intended 1.9 mSv: notifiable at 10 x = 19 mSv; 18.8 mSv
        (100.0, 1010.0, True, "2.2"),  # 19.2 mSv: below a fixed 25 mSv, yet notifiable
        (10.0, 155.0, False, "2.1"),  # intended 0.19 mSv: notifiable at 3 mSv; 2.9 mSv
        (10.0, 160.0, True, "2.1"),  # 3.04 mSv
        (600.0, 1490.0, False, "2.4"),  # intended 11.4 mSv: notifiable at 2.5 x = 28.5 mSv; 28.3 mSv
        (600.0, 1510.0, True, "2.4"),  # 28.7 mSv
        (1400.0, 1400.0, False, "2.4"),  # 26.6 mSv as intended: not an unintended exposure
    ],
)
def test_notifiable_follows_the_cqc_criteria_against_the_intended_dose(prescribed, given, notifiable, code):
    e = entry(prescribed_mbq=prescribed, measured_mbq=decay(given, T0, T0 - 600, 6586.2))
    _, oks, checks, msv = outcome(e)
    c = checks["notifiable"]
    assert oks["notifiable"] is (not notifiable)
    assert c.priority == "high" and c.details["criterion"] == code
    assert c.details["intended_msv"] == pytest.approx(prescribed * 0.019, abs=0.01)
    assert msv == pytest.approx(given * 0.019)
    assert f"CQC code {code}" in c.message  # the alarm says which criterion was met


def test_a_wrong_radiopharmaceutical_is_always_notifiable():
    e = entry(
        exam="PSMA",
        radionuclide="F-18",
        radiopharmaceutical="FDG",
        prescribed_mbq=10.0,
        measured_mbq=decay(10.0, T0, T0 - 600, 6586.2),
    )
    _, oks, checks, _ = outcome(e)
    assert oks["radiopharmaceutical"] is False and oks["notifiable"] is False
    assert checks["notifiable"].details["criterion"] == "wrong_radiopharmaceutical"
    assert "wrong radiopharmaceutical" in checks["notifiable"].message


def test_no_dose_coefficient_means_not_evaluated_not_passed():
    e = entry(
        radionuclide="Ga-68",
        radiopharmaceutical="PSMA-11",
        exam="PSMA",
        measured_mbq=decay(150.0, T0, T0 - 600, 67.83 * 60),
        prescribed_mbq=150.0,
    )
    _, oks, _, msv = outcome(e)
    assert oks["notifiable"] is None and msv is None
    assert oks["tolerance"] is True and oks["radiopharmaceutical"] is True


@pytest.mark.parametrize(
    "exam,nuclide,rp,ok,alarm",
    [
        ("PETONC", "F-18", "FDG", True, "dose.wrong_radiopharmaceutical"),
        ("PSMA", "F-18", "FDG", False, "dose.wrong_radiopharmaceutical"),  # booked Ga-68 PSMA, given FDG
        ("PETONC", "F-18", "FCH", False, "dose.wrong_radiopharmaceutical"),  # right nuclide, wrong compound
    ],
)
def test_wrong_radiopharmaceutical_for_the_booked_exam_is_high(exam, nuclide, rp, ok, alarm):
    _, oks, checks, _ = outcome(entry(exam=exam, radionuclide=nuclide, radiopharmaceutical=rp))
    assert oks["radiopharmaceutical"] is ok
    assert (
        checks["radiopharmaceutical"].alarm_type == alarm and checks["radiopharmaceutical"].priority == "high"
    )


def test_unknown_exam_is_a_low_alarm_unless_ignored():
    _, oks, checks, _ = outcome(entry(exam="NOPE"))
    assert oks["exam"] is False and checks["exam"].priority == "low"
    _, oks, _, _ = outcome(entry(exam="NOPE"), DispensingConfig(unknown_exam="ignore"))
    assert "exam" not in oks and "radiopharmaceutical" not in oks


@pytest.mark.parametrize("residual,limit_mbq,ok", [(5.0, None, True), (7.0, None, False), (5.0, 4.0, False)])
def test_residual_limit_percent_and_mbq(residual, limit_mbq, ok):
    cfg = DispensingConfig(exams=CFG.exams, residual_limit_mbq=limit_mbq)
    # 2 % of the 300 MBq measured at administration = 6 MBq
    _, oks, checks, _ = outcome(entry(residual_mbq=residual, residual_at=T0), cfg)
    assert oks["residual"] is ok and checks["residual"].priority == "low"


def test_record_issues_fail_the_record_check():
    _, oks, checks, _ = outcome(entry(issues=["room: number 9 is not mapped to an area"]))
    assert oks["record"] is False and "number 9" in checks["record"].message


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        ReferenceLevel()
    with pytest.raises(ValueError):
        ReferenceLevel(rule="fixed", mbq=400, mbq_per_kg=3.5)  # one rule, never both
    with pytest.raises(ValueError):
        ReferenceLevel(rule="per_kg", mbq=400)
    with pytest.raises(ValueError):
        Exam(radionuclide="Tc-99m")
    with pytest.raises(ValueError):
        DispensingConfig(summary_at="25:00")
    with pytest.raises(ValueError):
        UptakeConfig(uptake_s=3600, overdue_s=1800)


def test_config_cross_references_are_checked():
    from suitemon.daemon.config import ConfigError, parse_config

    base = {
        "site": {"id": "s", "name": "s", "timezone": "Mars/Olympus"},
        "areas": {"uptake1": {"name": "U1", "kind": "uptake_room"}},
        "devices": {
            "disp": {"kind": "dispenser", "transport": "tcp", "rooms": {"1": "uptake1", "2": "uptake9"}}
        },
        "uptake": {"notify_role": "nobody"},
        "alarm_types": {"dose.tolerance": {"priority": "medium", "kind": "clinical", "latching": False}},
    }
    with pytest.raises(ConfigError) as e:
        parse_config(base)
    paths = {i.path for i in e.value.issues}
    assert paths == {
        "devices.disp.rooms.2",
        "uptake.notify_role",
        "alarm_types.dose.tolerance.latching",
        "site.timezone",
    }


def test_removed_dose_settings_are_refused_by_key_path_not_ignored():
    from suitemon.daemon.config import ConfigError, parse_config

    base = {
        "site": {"id": "s", "name": "s"},
        "dispensing": {
            "notifiable_msv": 25.0,
            "reference_levels": {"FDG": {"fixed_mbq": 400}},
            "exams": {"X": {"radionuclide": "F-18", "reference_level": {"rule": "per_kg"}}},
        },
    }
    with pytest.raises(ConfigError) as e:
        parse_config(base)
    issues = {i.path: i.message for i in e.value.issues}
    assert set(issues) == {
        "dispensing.notifiable_msv",
        "dispensing.reference_levels",
        "dispensing.exams.X.reference_level",
    }
    assert (
        "CQC" in issues["dispensing.notifiable_msv"]
        and "reference_level" in issues["dispensing.reference_levels"]
    )


def test_check_config_shows_each_exams_reference_level_rule():
    r = subprocess.run(
        [sys.executable, "-m", "suitemon.daemon.cli", "check-config", str(REPO / "examples" / "suite.toml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:] if ln.startswith("    ")}
    assert "fixed 400 MBq" in lines["PETONC"]
    assert "per kg 3.5 MBq/kg" in lines["PETBRAIN"]
    assert "none (check not done)" in lines["PSMA"]
