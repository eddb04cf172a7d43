"""``suitemon report``: figures checked against values computed here, independently, from the
script that wrote the journal (numpy for the order statistics); HTML, CSV and PDF from the CLI."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy
import pytest
from helpers import REPO, SUITEMON, Watcher
from report_journal import KEY, SuiteWriter, example_config

from suitemon.daemon.report.build import build_report
from suitemon.daemon.report.period import parse_period

# November 2026: Mon 2 to Sun 29 is four whole ISO weeks (45..48); London is on UTC then.
FIRST, LAST = "2026-11-02", "2026-11-29"
H = 3600.0


def t(day: int, hour: float = 9.0) -> float:
    return datetime(2026, 11, day, tzinfo=UTC).timestamp() + hour * H


CANCEL_UPTAKE1 = [30.0, 60.0, 90.0, 200.0]
ACCEPT_UPTAKE1 = [10.0, 20.0, None, 40.0]
PETONC_MBQ = [350.0, 380.0, 399.0, 401.0, 420.0, 390.0, 360.0, 410.0, 370.0, 395.0]
PETBRAIN = [(250.0, 80.0), (300.0, 80.0), (200.0, None)]  # (MBq, kg): 3.5 MBq/kg -> 280 MBq at 80 kg
TEST_WEEKS_UPTAKE1 = [True, True, False, True]
STOPPED = (t(10, 12), t(10, 18))  # the daemon was stopped for six hours
HOTLAB_LOST = (t(3, 0), t(5, 0))  # two days without hotlab_env


def write_month(state: Path):
    cfg = example_config(state)
    w = SuiteWriter(cfg)
    w.daemon(t(1, 0), True)
    # Outside the period on both sides: must not count.
    w.bell_call(t(1, 23.9), "uptake2", cancel_after=5)
    for i, (cancel, accept) in enumerate(zip(CANCEL_UPTAKE1, ACCEPT_UPTAKE1, strict=True)):
        w.bell_call(t(4 + i), "uptake1", cancel_after=cancel, accept_after=accept)
    for i, wk_passed in enumerate(TEST_WEEKS_UPTAKE1):
        for room in cfg.devices["bells"].rooms:
            if room != "uptake1" or wk_passed:
                w.bell_test_pass(t(3 + 7 * i, 8), room)
    for i, mbq in enumerate(PETONC_MBQ):
        w.administration(t(6 + i, 10), i + 1, "PETONC", mbq)
    for j, (mbq, kg) in enumerate(PETBRAIN):
        w.administration(t(6 + j, 11), 100 + j, "PETBRAIN", mbq, weight_kg=kg)
    # A deterioration alert nobody took until the resuscitation team, 75 s after the raise.
    aid = "bells.uptake3.emergency"
    w.condition(
        t(12),
        aid,
        "bells.emergency",
        True,
        source="bells",
        location="uptake3",
        message="Emergency",
        details={"room": "uptake3", "origin": "button"},
    )
    w.notify(t(12), aid, 0, "room_nurse")
    w.ack(t(12) + 12, aid, "nurse1")
    w.notify(t(12) + 30, aid, 1, "suite_staff")
    w.notify(t(12) + 60, aid, 2, "resus_team")
    w.accept(t(12) + 75, aid, "resus1")
    # Three nuisance warnings (under a minute, cleared by themselves) and one real one.
    for k, secs in enumerate((10.0, 20.0, 40.0, 120.0)):
        w.condition(
            t(14, 9 + k),
            "uptake2_gamma.rate_warning",
            "radiation.rate_warning",
            True,
            source="uptake2_gamma",
            location="uptake2",
            message="warning",
        )
        w.condition(
            t(14, 9 + k) + secs,
            "uptake2_gamma.rate_warning",
            "radiation.rate_warning",
            False,
            source="uptake2_gamma",
            location="uptake2",
        )
    w.comm_lost(HOTLAB_LOST[0], "hotlab_env", HOTLAB_LOST[1] - HOTLAB_LOST[0])
    w.daemon(STOPPED[0], False)
    w.daemon(STOPPED[1], True)
    w.on_battery(t(15, 10), 300.0)
    w.at(t(15, 10) + 10).record("shutdown.started", {"trigger": "low runtime"})
    w.at(t(15, 10) + 11).record("shutdown.step.started", {"step": "pacs"})
    w.at(t(15, 10) + 14).record("shutdown.step.acked", {"step": "pacs", "target": "pacs"})
    w.at(t(15, 10) + 20).record("shutdown.completed", {"ups": None, "skipped": [], "unacknowledged": []})
    w.condition(
        t(20),
        "ups.battery_replace",
        "ups.battery_replace",
        True,
        priority="low",
        kind="maintenance",
        source="ups",
        location="control",
        message="replace the battery",
    )
    w.bell_call(t(30, 0.1), "uptake2", cancel_after=5)
    w.close()
    return cfg


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    state = tmp_path_factory.mktemp("report") / "state"
    cfg = write_month(state)
    report = build_report(
        cfg,
        parse_period(FIRST, LAST, cfg.site.timezone),
        chain_key=(state / "journal-chain.key").read_bytes(),
    )
    return cfg, report


def rows(report, section, table):
    return report.section(section).table(table).as_dicts()


def test_bell_response_per_room_matches_the_script(month):
    _, report = month
    by_room = {r["room"]: r for r in rows(report, "bells", "bells_response")}
    u1 = by_room["Uptake room 1"]
    accepts = [a for a in ACCEPT_UPTAKE1 if a is not None]
    assert u1["calls"] == 4 and u1["cancelled_in_room"] == 4 and u1["accepted"] == 3
    assert u1["cancel_median_s"] == pytest.approx(numpy.median(CANCEL_UPTAKE1), abs=0.05)  # 75 s
    assert u1["cancel_p90_s"] == pytest.approx(numpy.percentile(CANCEL_UPTAKE1, 90), abs=0.05)  # 167 s
    assert u1["accept_median_s"] == pytest.approx(numpy.median(accepts), abs=0.05)
    # The calls on Nov 1 and Nov 30 are outside the period.
    assert by_room["Uptake room 2"]["calls"] == 0


def test_weekly_bell_test_compliance_and_the_missed_week(month):
    _cfg, report = month
    table = report.section("bells").table("bells_weekly_tests")
    assert table.columns[1:5] == ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    by_room = {r[0]: r for r in table.rows}
    expected = 100.0 * sum(TEST_WEEKS_UPTAKE1) / len(TEST_WEEKS_UPTAKE1)
    assert by_room["Uptake room 1"][-1] == expected == 75.0
    assert by_room["Uptake room 1"][3] == "MISSED"
    i = list(by_room).index("Uptake room 1")
    assert table.marks == {(i, 3): "missed"}
    assert all(r[-1] == 100.0 for name, r in by_room.items() if name != "Uptake room 1")


def test_dose_reference_level_compliance_and_median(month):
    _, report = month
    by_exam = {r["exam"]: r for r in rows(report, "doses", "doses_per_exam")}
    onc = by_exam["PETONC"]
    within = sum(1 for v in PETONC_MBQ if v <= 400.0)
    assert onc["administrations"] == len(PETONC_MBQ)
    assert onc["compliance_pct"] == round(100.0 * within / len(PETONC_MBQ), 1) == 70.0
    assert onc["median_mbq"] == pytest.approx(numpy.median(PETONC_MBQ), abs=0.05)
    brain = by_exam["PETBRAIN"]
    # Per kg: 3.5 x 80 = 280 MBq; the record without a weight is not evaluated (and not compliant).
    assert (brain["evaluated"], brain["within_level"], brain["not_evaluated"]) == (2, 1, 1)
    assert brain["compliance_pct"] == 50.0
    failed = rows(report, "doses", "doses_failed_checks")
    over = sorted(r["record"] for r in failed if r["check"] == "reference_level")
    assert over == ["dispenser-101", "dispenser-4", "dispenser-5", "dispenser-8"]
    assert report.section("doses").figures_of_note["reference-level compliance %"] == round(100 * 8 / 12, 1)


def test_alarm_load_escalation_nuisance_and_open_alarms(month):
    _, report = month
    esc = rows(report, "alarms", "alarms_escalated")
    assert [(r["alarm_id"], r["highest_step"], r["accepted_by"], r["accepted_role"]) for r in esc] == [
        ("bells.uptake3.emergency", 3, "resus1", "resus_team")
    ]
    det = rows(report, "bells", "bells_deterioration")
    assert [(r["accept_after_s"], r["accepted_role"]) for r in det] == [(75.0, "resus_team")]
    high = {r["group"]: r for r in rows(report, "alarms", "alarms_response_priority")}["high"]
    assert high["ack_median_s"] == 12.0  # the nurse's silence, 12 s after the raise
    nuisance = {r["alarm_id"]: r for r in rows(report, "alarms", "alarms_nuisance")}
    assert nuisance["uptake2_gamma.rate_warning"]["count"] == 3
    assert nuisance["uptake2_gamma.rate_warning"]["median_duration_s"] == 20.0
    still = [r["alarm_id"] for r in rows(report, "alarms", "alarms_open_at_end")]
    assert sorted(still) == ["bells.uptake3.emergency", "ups.battery_replace"]
    per_day = {r["day"]: r for r in rows(report, "alarms", "alarms_per_day")}
    assert len(per_day) == 28 and per_day["2026-11-14"]["medium"] == 4


def test_device_availability_excludes_the_daemon_stop(month):
    _, report = month
    monitored = 28 * 24 * H - (STOPPED[1] - STOPPED[0])
    lost = HOTLAB_LOST[1] - HOTLAB_LOST[0]
    by_dev = {r["device"]: r for r in rows(report, "devices", "devices_availability")}
    assert by_dev["hotlab_env"]["availability_pct"] == round(100.0 * (monitored - lost) / monitored, 2)
    assert by_dev["ups"]["availability_pct"] == 100.0


def test_power_time_on_battery_and_shutdown_step_timing(month):
    _, report = month
    assert report.section("power").figures_of_note["minutes on battery"] == 5.0
    steps = rows(report, "power", "power_shutdowns")
    assert steps[0]["result"] == "completed" and steps[0]["took_s"] == 10.0
    assert (steps[1]["step"], steps[1]["offset_s"], steps[1]["took_s"], steps[1]["result"]) == (
        "pacs",
        1.0,
        3.0,
        "acked",
    )


def test_footer_names_the_verified_head(month):
    cfg, report = month
    db = sqlite3.connect(cfg.state.dir / "journal.sqlite3")
    seq, h = db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    db.close()
    v = report.verification
    assert v.ok and (v.head_seq, v.head_hash) == (seq, h) and v.keyed_from == 1


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SUITEMON, "report", *args], capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.fixture(scope="module")
def month_config(month, tmp_path_factory):
    cfg, _ = month
    text = (REPO / "examples" / "suite.toml").read_text()
    text = re.sub(r'(?m)^dir = .*$', f'dir = "{cfg.state.dir}"', text, count=1)
    path = tmp_path_factory.mktemp("cfg") / "suite.toml"
    path.write_text(text)
    return path


def test_cli_html_is_self_contained_with_the_footer_and_red_cells(month, month_config, tmp_path):
    _, report = month
    out = tmp_path / "r.html"
    r = cli("-c", str(month_config), "--from", FIRST, "--to", LAST, "-o", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    # No fetch of anything: no scripts, stylesheets or images by URL (SVG namespaces are not fetches).
    assert not re.search(r'<(script|link|img|iframe)\b|src=|@import|url\((?!#)', html)
    assert html.count("<svg") >= 5
    assert f"verified head seq <b>{report.verification.head_seq}</b>" in html
    assert report.verification.head_hash in html
    assert html.count('class="missed"') == 1
    assert len(set(re.findall(r'\bid="([^"]+)"', html))) == len(re.findall(r'\bid="([^"]+)"', html))
    assert "Patient" not in html.replace("Patients appear only by pseudonymous reference", "")


def test_cli_csv_writes_one_file_per_table(month, month_config, tmp_path):
    _, report = month
    r = cli(
        "-c", str(month_config), "--from", FIRST, "--to", LAST, "--format", "csv", "-o", str(tmp_path / "csv")
    )
    assert r.returncode == 0, r.stderr
    names = {p.stem for p in (tmp_path / "csv").glob("*.csv")}
    assert names == {t.name for s in report.sections for t in s.tables} | {"journal_verification"}
    with (tmp_path / "csv" / "doses_per_exam.csv").open() as f:
        onc = next(r for r in csv.DictReader(f) if r["exam"] == "PETONC")
    assert float(onc["compliance_pct"]) == 70.0


@pytest.mark.slow  # WeasyPrint lays out every page: 5-20 s on this machine
@pytest.mark.skipif(
    not shutil.which("pdftoppm"), reason="pdftoppm (poppler-utils) not installed: run .ci/run"
)
def test_cli_pdf_turns_into_png_pages(month_config, tmp_path):
    pdf = tmp_path / "r.pdf"
    r = cli("-c", str(month_config), "--from", FIRST, "--to", LAST, "--format", "pdf", "-o", str(pdf))
    assert r.returncode == 0, r.stderr
    assert pdf.read_bytes()[:5] == b"%PDF-"
    subprocess.run(
        ["/usr/bin/pdftoppm", "-r", "70", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=60
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pages)
    # The committed screenshot is refreshed with SUITEMON_SCREENSHOTS=docs/screenshots (as the board's).
    if os.environ.get("SUITEMON_SCREENSHOTS"):
        dest = Path(os.environ["SUITEMON_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(pages[:2], start=1):
            shutil.copy(p, dest / f"report-page{i}.png")


def test_cli_says_when_the_chain_is_broken(month_config, month, tmp_path):
    cfg, _ = month
    copy = tmp_path / "state"
    shutil.copytree(cfg.state.dir, copy)
    db = sqlite3.connect(copy / "journal.sqlite3")
    db.executescript(
        "DROP TRIGGER events_no_update; UPDATE events SET body = replace(body, '420.0', '390.0')"
        " WHERE type = 'dose.administered';"
    )
    db.close()
    conf = tmp_path / "suite.toml"
    conf.write_text(month_config.read_text().replace(str(cfg.state.dir), str(copy)))
    out = tmp_path / "r.html"
    r = cli("-c", str(conf), "--from", FIRST, "--to", LAST, "-o", str(out))
    assert r.returncode == 1
    assert "NOT verified" in r.stdout
    assert re.search(r'class="bad">FAILED at seq \d+: row content does not match its hash', out.read_text())


def test_cli_rejects_bad_dates(month_config):
    r = cli("-c", str(month_config), "--from", "2026-11-30", "--to", "2026-11-02")
    assert r.returncode == 2 and "before --from" in r.stderr
    r = cli("-c", str(month_config), "--from", "30/11/2026", "--to", "2026-11-02")
    assert r.returncode == 2 and "YYYY-MM-DD" in r.stderr


# -- a journal written by the daemon itself, playing the shipped scenario ------------------------------


def around_today() -> list[str]:
    """Yesterday to tomorrow: today in the site's timezone, whatever the hour."""
    d = datetime.now(UTC).date()
    return ["--from", (d - timedelta(days=1)).isoformat(), "--to", (d + timedelta(days=1)).isoformat()]


@pytest.mark.slow  # the scenario runs 15 s at 5x speed
def test_report_of_the_played_deterioration_scenario(make_suite, watcher, tmp_path):
    from bells_helpers import bells_device, bells_extra

    speed = 5.0
    suite = make_suite(
        {"bells": bells_device("tcp", tmp_path)}, bells_extra(steps=(30 / speed, 30 / speed, 60 / speed))
    )
    suite.start_sims()
    daemon = suite.start_daemon(watcher)
    watcher.wait_for(
        lambda w: (s := w.json_of(suite.topic("device", "bells", "state"))) and s["comm"] == "ok",
        10,
        what="bells polled",
    )
    assert suite.play(REPO / "examples" / "scenarios" / "deterioration.toml", watcher, speed=speed) == []
    daemon.terminate()
    # Independently of the report: the raise and the nurse's ack as they went out on MQTT.
    evs = [e for e in watcher.events(suite.site) if e["alarm_id"] == "bells.uptake3.emergency"]
    raised = next(e for e in evs if e["type"] == "alarm.raised")["data"]["alarm"]["raised_at"]
    acked = next(e for e in evs if e["type"] == "alarm.acknowledged")["data"]["alarm"]["acknowledged_at"]
    ack_s = (
        datetime.fromisoformat(acked.replace("Z", "+00:00"))
        - datetime.fromisoformat(raised.replace("Z", "+00:00"))
    ).total_seconds()
    r = subprocess.run(
        [
            *SUITEMON,
            "report",
            "-c",
            str(suite.path),
            *around_today(),
            "--format",
            "csv",
            "-o",
            str(tmp_path / "csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    with (tmp_path / "csv" / "alarms_response_priority.csv").open() as f:
        high = next(row for row in csv.DictReader(f) if row["group"] == "high")
    assert float(high["ack_median_s"]) == pytest.approx(ack_s, abs=0.05)
    with (tmp_path / "csv" / "alarms_escalated.csv").open() as f:
        esc = list(csv.DictReader(f))
    assert [(e["alarm_id"], e["highest_step"]) for e in esc] == [("bells.uptake3.emergency", "3")]
    with (tmp_path / "csv" / "journal_verification.csv").open() as f:
        v = next(csv.DictReader(f))
    assert v["verified"] == "True" and int(v["head_seq"]) == max(e["seq"] for e in watcher.events(suite.site))


@pytest.mark.slow  # a whole demo (broker, simulators, daemon) for a few seconds
def test_demo_keep_leaves_a_config_the_report_reads(tmp_path):
    keep = tmp_path / "kept"
    r = subprocess.run(
        [*SUITEMON, "demo", "--duration", "6", "--no-view", "--keep", str(keep)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (keep / "suite.toml").exists() and (keep / "state" / "journal.sqlite3").exists()
    r = subprocess.run(
        [
            *SUITEMON,
            "report",
            "-c",
            str(keep / "suite.toml"),
            *around_today(),
            "-o",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "chain verified" in r.stdout


def test_journal_schema_3_adds_the_time_index_and_the_report_uses_it(tmp_path):
    from suitemon.daemon.journal import Journal

    p = tmp_path / "j.sqlite3"
    j = Journal(p)
    j.append("daemon.started", {"version": "t", "pid": 1})
    j.close()
    db = sqlite3.connect(p)
    db.executescript("DROP INDEX events_ts; PRAGMA user_version = 2;")  # as written by schema 2
    db.close()
    j = Journal(p)  # migrates
    assert j.verify().ok
    j.close()
    db = sqlite3.connect(p)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'events_ts'").fetchone() == ("events_ts",)
    from suitemon.daemon.report.source import seq_bounds

    assert seq_bounds(db, "2000-01-01T00:00:00.000000Z", "2999-01-01T00:00:00.000000Z") == (1, 1)
    db.close()
    db = sqlite3.connect(p)
    db.execute("DROP INDEX events_ts")  # a journal that could not be migrated: same answer, by a scan
    assert seq_bounds(db, "2000-01-01T00:00:00.000000Z", "2999-01-01T00:00:00.000000Z") == (1, 1)


def test_publish_puts_the_headline_figures_retained_on_report_summary(
    month, month_config, broker, watcher, tmp_path
):
    cfg, report = month
    conf = tmp_path / "suite.toml"
    conf.write_text(re.sub(r"(?m)^port = 1883$", f"port = {broker.port}", month_config.read_text()))
    r = cli(
        "-c",
        str(conf),
        "--from",
        FIRST,
        "--to",
        LAST,
        "--format",
        "csv",
        "-o",
        str(tmp_path / "csv"),
        "--publish",
    )
    assert r.returncode == 0, r.stderr
    topic = f"suitemon/{cfg.site.id}/report/summary"
    msg = watcher.wait_for(lambda w: w.json_of(topic), 10, what="retained summary")
    assert msg["from"] == FIRST and msg["to"] == LAST
    assert (
        msg["figures"]["doses"]["reference-level compliance %"]
        == report.section("doses").figures_of_note["reference-level compliance %"]
    )
    assert msg["journal"] == {
        "verified": True,
        "head_seq": report.verification.head_seq,
        "head_hash": report.verification.head_hash,
    }
    late = Watcher(broker.port)  # subscribes after the publish: gets it only if it was retained
    try:
        late.wait_for(
            lambda w: any(t == topic and retained for t, _, retained, _ in w.messages),
            10,
            what="the summary delivered as retained",
        )
    finally:
        late.close()


@pytest.mark.slow  # two reports of a month, one CLI process each
def test_previous_month_needs_no_dates_and_refuses_both(month_config, tmp_path):
    r = cli("-c", str(month_config), "--previous-month", "--from", FIRST, "--to", LAST)
    assert r.returncode == 2 and "--previous-month" in r.stderr
    r = cli("-c", str(month_config), "--previous-month", "--format", "csv", "-o", str(tmp_path / "csv"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "csv" / "alarms_per_day.csv").exists()


def test_the_report_unit_and_timer_verify_and_run_last_month_with_publish(tmp_path):
    from test_systemd_units import ANALYZE, UNITS, exposure, local_copy, values

    if ANALYZE is None:
        pytest.skip("systemd-analyze missing: apt-get install systemd")
    unit = local_copy("suitemon-report.service", tmp_path)
    shutil.copy(UNITS / "suitemon-report.timer", tmp_path)
    r = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit), str(tmp_path / "suitemon-report.timer")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    assert exposure(unit) <= 2.0
    cmd = values(UNITS / "suitemon-report.service", "ExecStart")[0].split()
    assert cmd[1:3] == ["report", "-c"] and {"--previous-month", "--publish"} <= set(cmd)
    assert values(UNITS / "suitemon-report.service", "User") == values(UNITS / "suitemon.service", "User")
    assert values(UNITS / "suitemon-report.timer", "Persistent") == ["true"]


def test_a_monitor_journals_each_closed_day_and_the_report_plots_it(tmp_path):
    from types import SimpleNamespace

    from suitemon.daemon.facts import Facts
    from suitemon.daemon.radiation.rules import DAILY_DOSE, RadiationRules
    from suitemon.drivers.base import Reading

    cfg = example_config(tmp_path / "state")
    w = SuiteWriter(cfg)
    rules = RadiationRules(
        "hotlab_gamma", cfg.devices["hotlab_gamma"], SimpleNamespace(cfg=cfg, recorder=w, facts=Facts())
    )
    # 1.0 uSv/h from 23:00 to 01:00 (London = UTC in November), a reading every 2 s.
    start = t(10, 23)
    for k in range(3601):
        now = start + 2 * k
        w.at(now)
        rules.on_reading(Reading("hotlab_gamma", {"dose_rate_usv_h": 1.0}, at=now))
    w.close()
    db = sqlite3.connect(cfg.state.dir / "journal.sqlite3")
    days = [
        json.loads(b)["data"] for (b,) in db.execute("SELECT body FROM events WHERE type = ?", (DAILY_DOSE,))
    ]
    db.close()
    assert [(d["day"], d["area"], d["usv"], d["complete"]) for d in days] == [
        ("2026-11-10", "hotlab", 1.0, True)
    ]
    report = build_report(cfg, parse_period("2026-11-10", "2026-11-11", cfg.site.timezone), chain_key=KEY)
    table = report.section("radiation").table("radiation_daily_dose")
    assert table.rows[0][:2] == ["2026-11-10", 1.0]
    assert any(f.name == "radiation_daily_dose" for f in report.section("radiation").figures)


def test_a_row_that_is_not_json_is_counted_and_named_not_skipped_silently(month, tmp_path):
    cfg, report = month
    copy = tmp_path / "state"
    shutil.copytree(cfg.state.dir, copy)
    db = sqlite3.connect(copy / "journal.sqlite3")
    db.executescript(
        "DROP TRIGGER events_no_update; UPDATE events SET body = 'not json {' WHERE seq = ("
        "SELECT MIN(seq) FROM events WHERE type = 'alarm.raised' AND ts >= '2026-11-04');"
    )
    db.close()
    damaged = build_report(
        cfg,
        parse_period(FIRST, LAST, cfg.site.timezone),
        journal_path=copy / "journal.sqlite3",
        chain_key=KEY,
    )
    assert damaged.unreadable_rows == 1 and not damaged.verification.ok
    assert damaged.events_in_period == report.events_in_period
    from suitemon.daemon.report.render import html

    assert "1 journal row(s) in the period could not be read" in html(damaged)


def test_the_pass_and_the_chain_in_small_shares_give_the_same_report(month, monkeypatch):
    """Issue 17: the alarm fold and the chain walk split into segments that workers take in turn;
    joined, the report is the one a single pass gives (shares of 3 and 4 rows cut every episode)."""
    from suitemon.daemon import journal_segments
    from suitemon.daemon.report import source

    cfg, report = month
    monkeypatch.setattr(source, "FOLD_ROWS", 3)
    monkeypatch.setattr(journal_segments, "SEGMENT_ROWS", 4)
    split = build_report(cfg, parse_period(FIRST, LAST, cfg.site.timezone), chain_key=KEY)
    assert split.verification == report.verification and report.verification.ok
    assert split.events_in_period == report.events_in_period and split.unreadable_rows == 0
    assert len(split.sections) == len(report.sections)
    for mine, one in zip(split.sections, report.sections, strict=True):
        assert mine.figures_of_note == one.figures_of_note
        assert [(t.name, t.rows) for t in mine.tables] == [(t.name, t.rows) for t in one.tables]
