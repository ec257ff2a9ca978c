"""Which values count as numbers in settings, messages and amounts.

`bool` is a subclass of `int` in Python, so `True` passes `isinstance(x, int)` and would
slip through as an amount of 1 rial or a count of 1: every check here refuses it.
"""

from __future__ import annotations

from typing import TypeGuard


def is_int(value: object) -> TypeGuard[int]:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_count(value: object) -> TypeGuard[int]:
    """An int that is not a bool and not negative: an amount, a count, a size."""
    return is_int(value) and value >= 0
