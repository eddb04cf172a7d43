"""A blank board must never look like a quiet suite: in a real headless Chromium, the banner shows
when the broker dies, when the daemon's Last Will or silence says it is gone, and when the page loses
the board server. The power-failure screenshot is taken here too."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from board_helpers import launch_browser, need_browser, off_loop, points_env, shot, start_board
from helpers import Mosquitto, Watcher
from schema_check import problems

# Playwright's sync API runs its own event loop in the test's thread; its executor threads start on demand
pytestmark = pytest.mark.leaks_allowed(
    "Playwright's sync API runs its own event loop in the test's thread; its executor threads start on demand"
)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def browser():
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_browser(pw)
        yield b
        b.close()


@pytest.fixture
def private(tmp_path):
    """A broker of this test's own, to kill, and to hold topics no schema covers yet."""
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def new_page(browser, **kw):
    return browser.new_page(
        viewport=kw.pop("viewport", {"width": 1280, "height": 720}), bypass_csp=True, **kw
    )


def banner_says(page, text: str, timeout_ms: int):
    page.wait_for_function(
        "t => !document.getElementById('banner').hidden && document.getElementById('banner-text').textContent.includes(t)",
        arg=text,
        timeout=timeout_ms,
    )


def test_killing_the_broker_shows_the_banner_at_once_and_it_clears_when_it_returns(
    make_suite, private, browser
):
    suite = make_suite({"env": points_env()})
    suite.data["mqtt"]["port"] = private.port
    suite.write()
    w = Watcher(private.port)
    try:
        off_loop(suite.start_sims)
        suite.start_daemon(w)
        board = start_board(suite)
        page = new_page(browser)
        page.goto(board.url)
        page.wait_for_function("document.body.dataset.live === 'yes'", timeout=15000)
        page.wait_for_selector('[data-device="env"].dev-ok')

        killed = time.monotonic()
        private.stop()
        banner_says(page, "LOST THE MQTT BROKER", 3000)
        took = time.monotonic() - killed
        assert took < 3.0, f"banner took {took:.2f} s"
        assert page.evaluate("document.body.classList.contains('not-live')")
        assert page.inner_text("#summary") == "NOT LIVE"
        page.evaluate("document.getElementById('toast').hidden = true")
        shot(page, "board-broker-lost.png")

        private.start()  # same port: the daemon and the board reconnect by themselves
        page.wait_for_function("document.body.dataset.live === 'yes'", timeout=20000)
        assert page.locator("#banner").is_hidden()
        page.close()
    finally:
        w.close()


def test_daemon_last_will_silence_and_a_lost_board_server_each_raise_the_banner(
    make_suite, broker, watcher, browser
):
    suite = make_suite({"env": points_env()})
    off_loop(suite.start_sims)
    daemon = suite.start_daemon(watcher)
    board = start_board(suite, {"status_stale_s": 6})
    page = new_page(browser)
    page.goto(board.url)
    page.wait_for_function("document.body.dataset.live === 'yes'", timeout=15000)

    # 1. The daemon dies: the broker publishes its Last Will, the page says OFFLINE.
    daemon.kill9()
    banner_says(page, "suitemon is OFFLINE (connection lost)", 5000)
    assert page.evaluate("document.body.classList.contains('not-live')")

    # 2. A status that says online but stops refreshing is not believed for long.
    st = {
        "state": "online",
        "ts": iso(datetime.now(UTC)),
        "site": suite.site,
        "version": "0.1.0",
        "contract": 1,
        "pid": 1,
        "open_alarms": 0,
        "backlog": 0,
        "journal_fault": None,
        "devices": {"env": "ok"},
        "counters": {},
    }
    watcher.publish(suite.topic("status"), st, retain=True)
    page.wait_for_function("document.body.dataset.live === 'yes'", timeout=5000)
    shown_live = time.monotonic()
    banner_says(page, "suitemon has not reported", 12000)
    assert time.monotonic() - shown_live >= 3.0, "a fresh status must count as live for a while"

    # 3. The board server goes away: the page itself notices the lost stream.
    watcher.publish(suite.topic("status"), {**st, "ts": iso(datetime.now(UTC))}, retain=True)
    stopped = time.monotonic()
    board.proc.kill9()
    banner_says(page, "LOST CONTACT WITH THE BOARD SERVER", 5000)
    assert time.monotonic() - stopped < 5.0
    page.close()


def test_power_failure_state_shows_battery_and_shutdown_progress(make_suite, private, browser):
    suite = make_suite({"env": points_env()})
    suite.data["mqtt"]["port"] = private.port
    suite.write()
    w = Watcher(private.port)
    try:
        off_loop(suite.start_sims)
        suite.start_daemon(w)
        board = start_board(suite)
        page = new_page(browser)
        page.goto(board.url)
        page.wait_for_function("document.body.dataset.live === 'yes'", timeout=15000)
        off_loop(suite.sim, "env", "set", temperature=29.5)

        # The UPS and shutdown-sequencer features may not be merged: publish what they will
        # publish (a UPS device state on battery, the retained shutdown/state) as a stand-in.
        now = datetime.now(UTC)
        w.publish(
            suite.topic("device", "ups", "state"),
            {
                "device_id": "ups",
                "kind": "ups_apc",
                "name": "Suite UPS",
                "location": "hotlab",
                "ts": iso(now),
                "published_at": iso(now),
                "age_s": 0.2,
                "stale": False,
                "comm": "ok",
                "values": {
                    "on_battery": True,
                    "online": False,
                    "runtime_s": 412,
                    "charge_pct": 71.5,
                    "load_pct": 38.0,
                    "input_voltage": 0.0,
                },
                "last_error": None,
            },
            retain=True,
        )
        w.publish(
            suite.topic("shutdown", "state"),
            {
                "state": "running",
                "ts": iso(now),
                "started_at": iso(now - timedelta(seconds=40)),
                "deadline": iso(now + timedelta(seconds=95)),
                "message": "Mains lost for 30 s: staged shutdown",
                "steps": [
                    {"name": "reconstruction PC", "state": "done"},
                    {"name": "PET-CT console", "state": "done"},
                    {"name": "scanner gantry", "state": "running"},
                    {"name": "UPS outlet off", "state": "pending"},
                ],
            },
            retain=True,
        )
        page.wait_for_selector(".mains.mains-battery")
        assert "ON BATTERY" in page.inner_text("#power")
        assert "2 of 4 steps done" in page.inner_text("#power")
        assert page.get_attribute("#power progress", "value") == "2"
        page.wait_for_selector('[data-alarm-id="env.temperature.high"]')
        shot(page, "board-power-failure.png")

        # The UPS stops reporting: its state turns stale and mains becomes "unknown", never "ok".
        w.publish(
            suite.topic("device", "ups", "state"),
            {
                "device_id": "ups",
                "kind": "ups_apc",
                "name": "Suite UPS",
                "location": "hotlab",
                "ts": iso(now),
                "published_at": iso(datetime.now(UTC)),
                "age_s": 9.0,
                "stale": True,
                "comm": "lost",
                "values": {"on_battery": True},
                "last_error": "TimeoutError",
            },
            retain=True,
        )
        page.wait_for_selector(".mains.mains-unknown")
        page.wait_for_selector('[data-device="ups"].dev-lost')
        page.close()
        found = problems([m for m in w.messages if "/shutdown/" not in m[0]])
        assert not found, found
    finally:
        w.close()
