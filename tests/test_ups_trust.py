"""A UPS whose byte-order self-test fails is not trusted: a HIGH technical alarm says so and
none of its values (on battery, runtime) are reported until the test passes."""

from __future__ import annotations

from shutdown_helpers import AREAS, ups_device


def _alarm(watcher, suite, alarm_id):
    return watcher.json_of(suite.topic("alarm", alarm_id))


def test_word_swapping_gateway_raises_a_high_untrusted_alarm_and_reports_nothing(
    make_suite, watcher, tmp_path
):
    suite = make_suite(
        {"ups": ups_device("tcp", tmp_path, poll_s=0.5, on_battery_poll_s=0.5)}, extra={"areas": AREAS}
    )
    suite.start_sims("ups")
    suite.sim("ups", "swap_words", on=True)
    suite.sim("ups", "mains_fail")  # read through the swap, status would say "not on battery"
    suite.start_daemon(watcher)
    a = watcher.wait_for(
        lambda w: (a := _alarm(w, suite, "ups.untrusted")) and a["state"] == "active" and a,
        20,
        what="untrusted alarm",
    )
    assert a["priority"] == "high" and a["kind"] == "technical"
    assert "register 2054" in a["message"] and "NOT trusted" in a["message"]
    state = watcher.json_of(suite.topic("device", "ups", "state"))
    assert state["comm"] == "lost" and state.get("power") in (None, "unknown")
    assert _alarm(watcher, suite, "ups.on_battery") is None
    suite.sim("ups", "swap_words", on=False)  # gateway fixed: trusted again, and the truth shows
    watcher.wait_for(
        lambda w: (a := _alarm(w, suite, "ups.untrusted")) and a["state"] == "closed",
        20,
        what="untrusted alarm closed",
    )
    watcher.wait_for(
        lambda w: (a := _alarm(w, suite, "ups.on_battery")) and a["state"] == "active",
        10,
        what="on-battery alarm once trusted",
    )
