"""The login throttle's bookkeeping, with a clock of the test's own (the HTTP probes are in test_board_abuse)."""

from __future__ import annotations

from suitemon.daemon.board.throttle import LOCKOUT_FAILURES, LOCKOUT_S, LoginThrottle


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def lock(th: LoginThrottle, key: str) -> None:
    for _ in range(LOCKOUT_FAILURES):
        assert th.begin(key)
        th.end(key, ok=False)
    assert not th.begin(key)


def test_a_full_failure_table_refuses_new_names_instead_of_forgetting_a_lockout():
    clock = Clock()
    th = LoginThrottle(clock=clock, max_keys=100)
    victim = th.key("10.0.0.9", "nurse2", known=True)
    lock(th, victim)
    for i in range(1000):  # other addresses, each failing once: the table fills up
        k = th.key(f"10.1.{i // 250}.{i % 250}", "nurse2", known=True)
        if th.begin(k):
            th.end(k, ok=False)
    assert th.size <= 100
    assert not th.begin(victim), "filling the table lifted the lockout"
    assert not th.begin(th.key("10.9.9.9", "nurse1", known=True))  # full of live entries: fail closed
    clock.t += LOCKOUT_S + 1  # a minute later everything has expired and is swept
    assert th.begin(th.key("10.9.9.9", "nurse1", known=True))
    assert th.begin(victim)


def test_attempts_in_flight_count_and_a_success_clears_the_key():
    th = LoginThrottle(clock=Clock())
    k = th.key("10.0.0.1", "nurse1", known=True)
    assert all(th.begin(k) for _ in range(LOCKOUT_FAILURES))
    assert not th.begin(k), "five attempts waiting for the broker already use the allowance"
    for _ in range(LOCKOUT_FAILURES - 1):
        th.end(k, ok=False)
    th.end(k, ok=True)  # the last one was the right password: the four failures before it are forgotten
    assert all(th.begin(k) for _ in range(LOCKOUT_FAILURES))


def test_made_up_names_share_one_key_per_address():
    th = LoginThrottle(clock=Clock())
    keys = {th.key("10.0.0.1", f"nobody{i}", known=False) for i in range(50)}
    assert len(keys) == 1
