"""The receipt printer: 32 columns, a Jalali date, and the loyalty `RL` lines."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from datetime import datetime

from protocols.persian import format_rials, jalali, persian_digits

WIDTH = 32


def rials(amount: int) -> str:
    """`۱٬۸۰۰٬۰۰۰ ریال`: Persian digits and separator, as the club's RL lines print them."""
    return format_rials(amount) + " ریال"


def printed(value: str) -> str:
    """A number printed in Persian digits; a code with Latin letters (T0000001) as is."""
    return value if re.search(r"[A-Za-z]", value) else persian_digits(value)


@dataclass
class Receipt:
    title: str
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def format_receipt(*, title: str, at: datetime, terminal_id: str, merchant_id: str,
                   stan: str, rows: list[tuple[str, str]], loyalty: str = "",
                   footer: str = "") -> Receipt:
    """A receipt: header, Jalali date, key/value rows, then the RL text as sent.

    Numbers print in Persian digits like the RL lines; terminal and merchant ids and
    member codes, which hold Latin letters, print as they are.
    """
    rule = "-" * WIDTH
    lines = [title.center(WIDTH).rstrip(), rule,
             f"تاریخ: {persian_digits(jalali(at))}",
             f"پایانه: {terminal_id}  پذیرنده: {merchant_id}",
             f"شماره پیگیری: {printed(stan)}", rule]
    lines += [f"{k}: {printed(v)}" for k, v in rows]
    if loyalty:
        if rows:
            lines.append(rule)
        lines += loyalty.split("\n")
    if footer:  # a sentence for the customer, wrapped to the paper
        lines += [rule, *textwrap.wrap(footer, WIDTH)]
    return Receipt(title, lines)


@dataclass
class Printer:
    """Keeps every printed receipt; `on_print` lets a UI or the demo show it."""

    receipts: list[Receipt] = field(default_factory=list)
    on_print: object = None

    def print(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)
        if callable(self.on_print):
            self.on_print(receipt)

    @property
    def last(self) -> Receipt | None:
        return self.receipts[-1] if self.receipts else None
