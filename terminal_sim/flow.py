"""What the keypad is for at each moment: the terminal's screen flow, as pure code.

The UI feeds keys in; the flow answers with prompts and, when an entry is complete, an
`Action` for the terminal (run in a worker, since it talks to the line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from terminal_sim.keypad import BACK, CLEAR, ENTER, Keypad, KeypadError, parse_amount

MEMBER = "MEMBER"   # the membership key
CARD = "CARD"       # a loyalty card swiped
SKIP = "SKIP"
CANCEL = "CANCEL"

PROMPTS = {
    "idle": "مبلغ را وارد کنید یا کلید باشگاه را بزنید",
    "amount": "مبلغ (ریال):",
    "identify": "باشگاه مشتریان؟ کلید باشگاه، کارت یا رد کردن",
    "phone": "شماره موبایل:",
    "enroll_phone": "عضویت: شماره موبایل:",
    "pin": "رمز کارت:",
    "otp": "کد یکبار مصرف:",
    "busy": "لطفا صبر کنید...",
}

#: What an empty ENTER is refused with, in the states that need something typed.
EMPTY_ENTRY = {"phone": "شماره را وارد کنید", "enroll_phone": "شماره را وارد کنید",
               "pin": "رمز را وارد کنید"}


@dataclass
class Action:
    kind: str  # "sale" | "enroll"
    params: dict[str, Any]


@dataclass
class Flow:
    """States: idle, amount, identify, phone, pin, enroll_phone, otp, busy."""

    card_number: str = "6037701234567896"  # the loyalty card the CARD key swipes
    state: str = "idle"
    pad: Keypad = field(default_factory=Keypad)
    sale: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def prompt(self) -> str:
        return self.error or PROMPTS[self.state]

    def reset(self) -> None:
        self.state, self.sale, self.error = "idle", {}, ""
        self.pad.press(CLEAR)

    def press(self, key: str) -> Action | str | None:
        """A key; returns an Action to run, the OTP text when in `otp`, or None."""
        self.error = ""
        if key == CANCEL:
            self.reset()
            return None
        if self.state == "busy":
            return None
        if key == MEMBER:
            if self.state == "idle":
                self.state = "enroll_phone"
            elif self.state == "identify":
                self.state = "phone"
            return None
        if key == CARD:
            if self.state == "identify":
                self.sale["card"] = self.card_number
                self.state = "pin"
            return None
        if key == SKIP:
            if self.state == "identify":
                self.state = "pin"
            return None
        if key in (CLEAR, BACK) or key != ENTER:
            if self.state == "idle" and key not in (CLEAR, BACK):
                self.state = "amount"
            try:
                self.pad.press(key)
            except KeypadError as exc:
                self.error = str(exc)
            return None
        return self._enter(self.pad.press(ENTER) or "")

    def _enter(self, text: str) -> Action | str | None:
        if self.state == "amount":
            try:
                self.sale = {"amount": parse_amount(text)}
            except KeypadError as exc:
                self.error = str(exc)
                return None
            self.state = "identify"
        elif self.state in EMPTY_ENTRY and not text:
            self.error = EMPTY_ENTRY[self.state]
        elif self.state == "phone":
            self.sale["phone"] = text
            self.state = "pin"
        elif self.state == "pin":
            self.sale["pin"] = text
            self.state = "busy"
            return Action("sale", dict(self.sale))
        elif self.state == "enroll_phone":
            self.state = "busy"
            return Action("enroll", {"phone": text})
        elif self.state == "otp":
            self.state = "busy"
            return text
        return None

    def ask_otp(self) -> None:
        self.state = "otp"

    def done(self) -> None:
        """The action finished: back to idle for the next customer."""
        self.reset()
