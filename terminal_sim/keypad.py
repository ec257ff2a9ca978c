"""The terminal keypad: digits (Latin, Persian or Arabic-Indic), clear, backspace, enter.

The terminal keeps what the customer typed as typed (Persian digits included): the agent
normalises phone numbers, so the simulator must be able to send them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols.persian import ARABIC_DIGITS, PERSIAN_DIGITS, THOUSANDS_SEPARATOR, ascii_digits

CLEAR = "CLEAR"
BACK = "BACK"
ENTER = "ENTER"
KEYS = frozenset("0123456789+" + PERSIAN_DIGITS + ARABIC_DIGITS) | {CLEAR, BACK, ENTER}


class KeypadError(ValueError):
    """A key the keypad does not have, or an entry that is not what was asked for."""


@dataclass
class Keypad:
    """One line of keypad entry; `press` returns the finished text on ENTER."""

    max_length: int = 20
    text: str = ""
    history: list[str] = field(default_factory=list)

    def press(self, key: str) -> str | None:
        if key not in KEYS:
            raise KeypadError(f"no such key: {key!r}")
        self.history.append(key)
        if key == CLEAR:
            self.text = ""
        elif key == BACK:
            self.text = self.text[:-1]
        elif key == ENTER:
            done, self.text = self.text, ""
            return done
        elif len(self.text) < self.max_length:
            self.text += key
        return None

    def type(self, text: str, enter: bool = True) -> str | None:
        """Press each character of `text`, then ENTER."""
        for ch in text:
            self.press(ch)
        return self.press(ENTER) if enter else None


def parse_amount(typed: str) -> int:
    """A cashier's amount in rials: digits only (any script), 1..999,999,999,999."""
    latin = ascii_digits(typed.strip().replace(",", "").replace(THOUSANDS_SEPARATOR, ""))
    if not latin.isascii() or not latin.isdigit():
        raise KeypadError(f"amount must be digits: {typed!r}")
    value = int(latin)
    if not 0 < value < 10**12:
        raise KeypadError(f"amount out of range: {value}")
    return value
