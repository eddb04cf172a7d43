"""Decay correction against hand-computed values, and each dose check at and around its limits."""

from __future__ import annotations

import pytest

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
    base = dict(seq=1, job=1001, patient_ref="P1", accession="ACC1", exam="PETONC", operator=None, room="uptake1",
                room_number=1, weight_kg=90.0, radionuclide="F-18", radiopharmaceutical="FDG",
                prescribed_mbq=300.0, measured_at=T0 - 600, administered_at=T0,
                residual_mbq=None, residual_at=None, half_life_s=None, issues=[])
    base["measured_mbq"] = decay(300.0, T0, T0 - 600, 6586.2)  # 320.4 MBq in the syringe at 09:50
    base.update(kw)
    return base


CFG = DispensingConfig(exams={"PETONC": Exam(radionuclide="F-18", radiopharmaceutical="FDG"),
                              "PSMA": Exam(radionuclide="Ga-68", radiopharmaceutical="PSMA-11")})


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
    assert ok == {"record": True, "tolerance": True, "reference_level": True, "notifiable": True,
                  "radiopharmaceutical": True, "residual": True}
    assert msv == pytest.approx(0.019 * (300.0 - 2.0 * 2 ** (60 / 6586.2)))


@pytest.mark.parametrize("factor,ok", [(1.099, True), (1.101, False), (0.901, True), (0.899, False)])
def test_tolerance_is_plus_minus_ten_percent(factor, ok):
    e = entry(measured_mbq=entry()["measured_mbq"] * factor)
    assert outcome(e)[1]["tolerance"] is ok


@pytest.mark.parametrize("mbq,weight,mode,ok", [
    (390.0, 120.0, "any", True),     # under 400 and under 3.5 x 120 = 420
    (410.0, 120.0, "any", False),    # over the fixed 400
    (300.0, 80.0, "any", False),     # over 3.5 x 80 = 280
    (300.0, 80.0, "all", True),      # over per-kg only: "all" needs both
    (450.0, 80.0, "all", False),     # over both
    (390.0, None, "any", True),      # no weight: the fixed rule alone
])
def test_reference_level_fixed_and_per_kg(mbq, weight, mode, ok):
    cfg = DispensingConfig(exams=CFG.exams,
                           reference_levels={"FDG": ReferenceLevel(fixed_mbq=400, per_kg_mbq=3.5, mode=mode)})
    e = entry(prescribed_mbq=mbq, measured_mbq=decay(mbq, T0, T0 - 600, 6586.2), weight_kg=weight)
    _, oks, checks, _ = outcome(e, cfg)
    assert oks["reference_level"] is ok
    if weight is None:
        assert "no weight" in checks["reference_level"].message


def test_per_kg_only_without_weight_is_not_evaluated():
    cfg = DispensingConfig(reference_levels={"FDG": ReferenceLevel(per_kg_mbq=3.5)}, exams=CFG.exams)
    _, oks, checks, _ = outcome(entry(weight_kg=None), cfg)
    assert oks["reference_level"] is None and "weight" in checks["reference_level"].message


@pytest.mark.parametrize("mbq,ok", [(1300.0, True), (1315.0, True), (1316.0, False), (1500.0, False)])
def test_notifiable_threshold_25_msv_at_0_019_msv_per_mbq(mbq, ok):
    # 25 mSv / 0.019 mSv/MBq = 1315.79 MBq
    e = entry(prescribed_mbq=mbq, measured_mbq=decay(mbq, T0, T0 - 600, 6586.2))
    _, oks, checks, _ = outcome(e)
    assert oks["notifiable"] is ok
    assert checks["notifiable"].priority == "high"


def test_no_dose_coefficient_means_not_evaluated_not_passed():
    e = entry(radionuclide="Ga-68", radiopharmaceutical="PSMA-11", exam="PSMA",
              measured_mbq=decay(150.0, T0, T0 - 600, 67.83 * 60), prescribed_mbq=150.0)
    _, oks, _, msv = outcome(e)
    assert oks["notifiable"] is None and msv is None
    assert oks["tolerance"] is True and oks["radiopharmaceutical"] is True


@pytest.mark.parametrize("exam,nuclide,rp,ok,alarm", [
    ("PETONC", "F-18", "FDG", True, "dose.wrong_radiopharmaceutical"),
    ("PSMA", "F-18", "FDG", False, "dose.wrong_radiopharmaceutical"),     # booked Ga-68 PSMA, given FDG
    ("PETONC", "F-18", "FCH", False, "dose.wrong_radiopharmaceutical"),   # right nuclide, wrong compound
])
def test_wrong_radiopharmaceutical_for_the_booked_exam_is_high(exam, nuclide, rp, ok, alarm):
    _, oks, checks, _ = outcome(entry(exam=exam, radionuclide=nuclide, radiopharmaceutical=rp))
    assert oks["radiopharmaceutical"] is ok
    assert checks["radiopharmaceutical"].alarm_type == alarm and checks["radiopharmaceutical"].priority == "high"


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
        Exam(radionuclide="Tc-99m")
    with pytest.raises(ValueError):
        DispensingConfig(summary_at="25:00")
    with pytest.raises(ValueError):
        UptakeConfig(uptake_s=3600, overdue_s=1800)


def test_config_cross_references_are_checked():
    from suitemon.daemon.config import ConfigError, parse_config
    base = {"site": {"id": "s", "name": "s", "timezone": "Mars/Olympus"},
            "areas": {"uptake1": {"name": "U1", "kind": "uptake_room"}},
            "devices": {"disp": {"kind": "dispenser", "transport": "tcp", "rooms": {"1": "uptake1", "2": "uptake9"}}},
            "uptake": {"notify_role": "nobody"},
            "alarm_types": {"dose.tolerance": {"priority": "medium", "kind": "clinical", "latching": False}}}
    with pytest.raises(ConfigError) as e:
        parse_config(base)
    paths = {i.path for i in e.value.issues}
    assert paths == {"devices.disp.rooms.2", "uptake.notify_role", "alarm_types.dose.tolerance.latching",
                     "site.timezone"}
