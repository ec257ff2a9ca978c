"""The login throttle: a pure state machine fed time, with properties over any sequence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from panel.throttle import FIRST_WAIT, FORGET_AFTER, MAX_FAILURES, MAX_WAIT, LoginThrottle


def test_five_wrong_passwords_then_the_sixth_waits() -> None:
    t = LoginThrottle()
    for i in range(MAX_FAILURES):
        assert t.wait("ali", "10.0.0.1", 100.0 + i) == 0
        t.failed("ali", "10.0.0.1", 100.0 + i)
    assert t.wait("ali", "10.0.0.1", 104.0) == FIRST_WAIT
    assert t.wait("ali", "10.0.0.1", 104.0 + FIRST_WAIT) == 0


def test_per_account_from_any_address_and_per_address_for_any_account() -> None:
    t = LoginThrottle()
    for i in range(MAX_FAILURES):
        t.failed("ali", f"10.0.0.{i}", 0.0)  # one account, many addresses
    assert t.wait("ali", "10.9.9.9", 1.0) > 0
    assert t.wait("sara", "10.9.9.9", 1.0) == 0
    for i in range(MAX_FAILURES):
        t.failed(f"user{i}", "10.0.0.77", 2.0)  # one address, many accounts
    assert t.wait("sara", "10.0.0.77", 3.0) > 0
    assert t.wait("sara", "10.0.0.78", 3.0) == 0


def test_the_wait_doubles_and_is_capped() -> None:
    t = LoginThrottle()
    now = 0.0
    waits = []
    for _ in range(MAX_FAILURES + 8):
        now += t.wait("ali", "a", now)
        t.failed("ali", "a", now)
        waits.append(t.wait("ali", "a", now))
    assert waits[MAX_FAILURES - 1:MAX_FAILURES + 2] == [FIRST_WAIT, 2 * FIRST_WAIT,
                                                         4 * FIRST_WAIT]
    assert max(waits) == MAX_WAIT


def test_a_right_password_clears_the_account_not_the_address() -> None:
    t = LoginThrottle()
    for _ in range(MAX_FAILURES - 1):
        t.failed("ali", "a", 0.0)
    t.succeeded("ali", "a", 1.0)
    assert t.failures("ali", "a") == (0, MAX_FAILURES - 1)


def test_failures_are_forgotten_after_a_quiet_hour() -> None:
    t = LoginThrottle()
    for _ in range(MAX_FAILURES):
        t.failed("ali", "a", 0.0)
    assert t.wait("ali", "a", FORGET_AFTER) == 0
    t.failed("ali", "a", FORGET_AFTER)
    assert t.failures("ali", "a") == (1, 1)


# (account index, address index, wrong?, seconds passed before the attempt)
attempts = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.booleans(),
                              st.floats(0, 400, allow_nan=False)), max_size=80)


@given(attempts)
def test_no_more_than_five_wrong_passwords_are_checked_before_a_wait(seq) -> None:
    """Once a key has MAX_FAILURES wrong passwords, the very next attempt must wait."""
    t = LoginThrottle()
    now = 0.0
    streak: dict[str, int] = {}
    for account, address, wrong, dt in seq:
        now += dt
        acc, addr = f"u{account}", f"ip{address}"
        if t.wait(acc, addr, now) > 0:
            continue  # refused without checking the password
        if wrong:
            t.failed(acc, addr, now)
            for key in (acc, addr):
                streak[key] = streak.get(key, 0) + 1
        else:
            t.succeeded(acc, addr, now)
        for key, failures in zip((acc, addr), t.failures(acc, addr), strict=True):
            assert failures <= streak.get(key, 0)
            if wrong and failures >= MAX_FAILURES:
                assert t.wait(acc, addr, now) > 0  # the next try, however soon, waits


@given(attempts, st.floats(0, 10_000, allow_nan=False))
def test_the_wait_only_shrinks_as_time_passes_and_waiting_it_out_admits(seq, later) -> None:
    t = LoginThrottle()
    now = 0.0
    for account, address, wrong, dt in seq:
        now += dt
        if t.wait(f"u{account}", f"ip{address}", now) == 0 and wrong:
            t.failed(f"u{account}", f"ip{address}", now)
    for account in range(3):
        for address in range(3):
            w = t.wait(f"u{account}", f"ip{address}", now)
            assert 0 <= w <= MAX_WAIT
            assert t.wait(f"u{account}", f"ip{address}", now + later) <= w
            assert t.wait(f"u{account}", f"ip{address}", now + w) == 0
