"""protocols.numbers: bools are never numbers, counts are never negative."""

from __future__ import annotations

from protocols.numbers import is_count, is_int, is_number


def test_bool_is_not_a_number() -> None:
    for check in (is_int, is_number, is_count):
        assert not check(True)
        assert not check(False)


def test_int_number_and_count() -> None:
    assert is_int(0) and is_int(-3)
    assert not is_int(1.0) and not is_int("1") and not is_int(None)
    assert is_number(1.5) and is_number(-2) and not is_number("1.5")
    assert is_count(0) and is_count(10**15)
    assert not is_count(-1) and not is_count(1.0)
