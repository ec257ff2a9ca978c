"""What the keypad is for at each moment: the terminal's screen flow, as pure code.

The UI feeds keys in; the flow answers with prompts and, when an entry is complete, an
`Action` for the terminal (run in a worker, since it talks to the line). The order is a
real terminal's: the customer sees the club's discount and the amount to pay before the
bank card is swiped and its PIN typed.

    idle ─digit→ amount ─Enter→ identify ─m→ phone ─Enter→ quoting ┐
                                  │ ─c (loyalty card)→ quoting ────┤ (otp: one-time code)
                                  └ ─s (skip the club)→ quoting ───┤
    swipe ←─ discount and net on the display ←─────────────────────┘
    swipe ─c or Enter (bank card)→ pin ─Enter→ paying → idle
    idle ─m→ enroll_phone ─Enter→ enrolling → idle
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocols.persian import ascii_digits, format_rials
from terminal_sim.keypad import BACK, CLEAR, ENTER, Keypad, KeypadError, parse_amount
from terminal_sim.printer import rials

MEMBER = "MEMBER"   # the membership key
CARD = "CARD"       # a card swiped: the loyalty card at `identify`, the bank card at `swipe`
SKIP = "SKIP"
CANCEL = "CANCEL"

PROMPTS = {
    "idle": "مبلغ را وارد کنید یا کلید باشگاه را بزنید",
    "amount": "مبلغ (ریال):",
    "identify": "باشگاه مشتریان؟ کلید باشگاه، کارت باشگاه یا رد کردن",
    "phone": "شماره موبایل:",
    "enroll_phone": "عضویت: شماره موبایل:",
    "swipe": "کارت بانکی را بکشید",
    "pin": "رمز کارت:",
    "otp": "کد یکبار مصرف:",
    "busy": "لطفا صبر کنید...",
}

#: What an empty ENTER is refused with, in the states that need something typed.
EMPTY_ENTRY = {"phone": "شماره را وارد کنید", "enroll_phone": "شماره را وارد کنید",
               "pin": "رمز را وارد کنید"}


@dataclass
class Action:
    kind: str  # "quote" | "pay" | "enroll"
    params: dict[str, Any]


def grouped(typed: str) -> str:
    """An amount as it is typed, with thousands separators (`۱٬۲۰۰٬۰۰۰`)."""
    latin = ascii_digits(typed)
    return format_rials(int(latin)) if latin.isascii() and latin.isdigit() else typed


@dataclass
class Flow:
    """States: idle, amount, identify, phone, swipe, pin, enroll_phone, otp, busy.

    `display` is the customer display: the amount once entered, then what the terminal
    shows; it is cleared when the next customer's entry starts.
    """

    card_number: str = "6037701234567896"  # the loyalty card the CARD key swipes
    bank_card: str = "6037991234567891"    # the bank card the CARD key swipes at `swipe`
    state: str = "idle"
    pad: Keypad = field(default_factory=Keypad)
    sale: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    display: str = ""

    @property
    def prompt(self) -> str:
        return self.error or PROMPTS[self.state]

    @property
    def entry(self) -> str:
        """The entry line: the amount grouped by thousands, the PIN as stars."""
        text = self.pad.text
        if self.state == "amount":
            return grouped(text)
        if self.state == "pin":
            return "*" * len(text)
        return text

    def show(self, text: str) -> None:
        self.display = text

    def reset(self) -> None:
        self.state, self.sale, self.error = "idle", {}, ""
        self.pad.press(CLEAR)

    def _start(self, state: str) -> None:
        """A new customer: the last one's display is cleared."""
        self.state, self.display = state, ""

    def press(self, key: str) -> Action | str | None:
        """A key; returns an Action to run, the OTP text when in `otp`, or None."""
        self.error = ""
        if self.state == "busy":  # the terminal is on the line: it finishes first
            return None
        if key == CANCEL:
            if self.state == "otp":  # no code: the sale goes on at the full amount
                self.state = "busy"
                return ""
            self.reset()
            return None
        if key == MEMBER:
            if self.state == "idle":
                self._start("enroll_phone")
            elif self.state == "identify":
                self.state = "phone"
            return None
        if key == CARD:
            if self.state == "identify":
                self.sale["card"] = self.card_number
                return self._quote()
            if self.state == "swipe":
                self.state = "pin"
            return None
        if key == SKIP:
            return self._quote() if self.state == "identify" else None
        if key != ENTER:
            if self.state == "idle" and key not in (CLEAR, BACK):
                self._start("amount")
            try:
                self.pad.press(key)
            except KeypadError as exc:
                self.error = str(exc)
            return None
        return self._enter(self.pad.press(ENTER) or "")

    def _quote(self) -> Action:
        self.state = "busy"
        return Action("quote", dict(self.sale))

    def _enter(self, text: str) -> Action | str | None:
        if self.state == "amount":
            try:
                self.sale = {"amount": parse_amount(text)}
            except KeypadError as exc:
                self.error = str(exc)
                self.pad.text = text  # left as typed, to be corrected
                return None
            self.display = f"مبلغ: {rials(self.sale['amount'])}"
            self.state = "identify"
        elif self.state in EMPTY_ENTRY and not text:
            self.error = EMPTY_ENTRY[self.state]
        elif self.state == "phone":
            self.sale["phone"] = text
            return self._quote()
        elif self.state == "swipe":
            self.state = "pin"
        elif self.state == "pin":
            self.state = "busy"
            return Action("pay", {"pan": self.bank_card, "pin": text})
        elif self.state == "enroll_phone":
            self.state = "busy"
            return Action("enroll", {"phone": text})
        elif self.state == "otp":
            self.state = "busy"
            return text
        return None

    def ask_otp(self) -> None:
        self.state = "otp"

    def quoted(self) -> None:
        """The club answered (or not): discount and net are on the display; card next."""
        self.state = "swipe"

    def done(self) -> None:
        """The action finished: back to idle for the next customer."""
        self.reset()
