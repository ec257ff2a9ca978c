"""Persian texts the customer sees: SMS bodies, the terminal display (MG) and receipt (RL).

Pure functions: no clock reads, no I/O. Every MG builder returns at most 64 UTF-8 bytes and
every RL builder at most 400 (PROTOCOL.md 3.3), cut on a character boundary, so the agent
can pass them on unchanged. Receipt lines are kept within 32 columns (a thermal printer)
for any amount that fits field 4 (12 digits); when bytes run short, optional lines (offers,
tier, header) are dropped whole before anything is cut.

Naive datetimes are taken as UTC: the backend keeps its clock in UTC and shows Tehran time.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from protocols import persian
from protocols.identity import mask_phone
from protocols.numbers import is_count, is_int
from protocols.persian import format_rials, persian_digits

# fit cuts to a byte limit on a character boundary; texts.fit is the same function.
from protocols.tlv import LIMITS, fit

MG_LIMIT = LIMITS["MG"]
RL_LIMIT = LIMITS["RL"]
PRINTER_COLUMNS = 32

_ZERO_WIDTH = {"\u200c", "\u200d", "\u200e", "\u200f", "\ufeff"}
_SHOP_SMS_CHARS = 40

HEADER = "باشگاه مشتریان"
RIALS = "ریال"
AMOUNTS_IN_RIALS = "مبالغ به ریال"

#: Persian names of the default tiers; a tier the shop named itself is shown as written.
TIER_NAMES = {"bronze": "برنزی", "silver": "نقره‌ای", "gold": "طلایی", "gift": "کارت هدیه"}


# --- helpers -----------------------------------------------------------------------------


def jalali(when: datetime) -> str:
    """`when` in Tehran time as a Jalali date and time: `۱۴۰۵/۰۱/۰۱ ۱۵:۳۰`."""
    if not isinstance(when, datetime):
        raise ValueError("when must be a datetime")
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    # Tehran's offsets are whole minutes: one conversion per minute serves every SMS in it.
    return _jalali_minute(int(aware.timestamp()) // 60)


@lru_cache(maxsize=4096)
def _jalali_minute(minute: int) -> str:
    """The Jalali text of one UTC minute; jdatetime's conversion and strftime cost ~40 us."""
    return persian_digits(persian.jalali(datetime.fromtimestamp(minute * 60, UTC)))


def tier_label(tier: str) -> str:
    """The tier's Persian name when it is one of the defaults, else the name as configured."""
    if not isinstance(tier, str):
        _clean(tier, "tier")  # raises the usual error
    return _tier_label(tier)


@lru_cache(maxsize=256)
def _tier_label(tier: str) -> str:
    # a shop has a handful of tiers: clean each name once, not on every receipt
    name = _clean(tier, "tier", allow_empty=True)
    return TIER_NAMES.get(name.lower(), name)


@lru_cache(maxsize=64)
def _tier_line(label: str) -> str:
    # the same few lines on every receipt: measured and clipped once
    return _clip(f"سطح: {label}") if label else ""


def columns(text: str) -> int:
    """Printer cells `text` takes: combining marks and zero-width joiners take none."""
    return sum(1 for c in text if c not in _ZERO_WIDTH and not unicodedata.combining(c))


def _clip(text: str, width: int = PRINTER_COLUMNS) -> str:
    """`text` cut to `width` printer columns, with an ellipsis when something was cut."""
    if columns(text) <= width:
        return text
    out: list[str] = []
    used = 0
    for c in text:
        cost = 0 if c in _ZERO_WIDTH or unicodedata.combining(c) else 1
        if used + cost > width - 1:
            break
        out.append(c)
        used += cost
    return "".join(out).rstrip() + "…"


_SPACES = re.compile(r"\s+")
_LINE_BREAKING = {"Cc", "Cs", "Zl", "Zp"}


def _clean(value: object, name: str, *, allow_empty: bool = False) -> str:
    """One line of caller text: control characters and line breaks become spaces."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {type(value).__name__}")
    chars = (" " if unicodedata.category(c) in _LINE_BREAKING else c for c in value)
    text = _SPACES.sub(" ", "".join(chars)).strip()
    if not text and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return text


def _amount(value: object, name: str) -> int:
    if type(value) is int and value >= 0:  # nearly always: no further checks
        return value
    if not is_int(value):
        raise ValueError(f"{name} must be an integer number of rials")
    if not is_count(value):
        raise ValueError(f"{name} must not be negative")
    return value


def _code(member_code: object) -> str:
    """A member code as shown: Persian digits when it is all digits, else as issued."""
    code = _clean(member_code, "member_code")
    return persian_digits(code) if code.isascii() and code.isdigit() else code


def _display(candidates: Sequence[str]) -> str:
    """The richest candidate that fits MG; the last one cut to fit when none does."""
    for text in candidates:
        if len(text.encode("utf-8")) <= MG_LIMIT:
            return text
    return fit(candidates[-1], MG_LIMIT)


def _receipt(lines: Sequence[tuple[str, int]]) -> str:
    """RL from (line, priority) pairs: priority 0 is kept; higher numbers go first when long."""
    whole = "\n".join([text for text, _ in lines if text])
    if len(whole) * 4 <= RL_LIMIT or len(whole.encode("utf-8")) <= RL_LIMIT:
        return whole  # it fits (nearly every receipt): nothing to drop or cut
    kept = [(text, prio) for text, prio in lines if text]
    while len("\n".join(t for t, _ in kept).encode("utf-8")) > RL_LIMIT:
        worst = max((p for _, p in kept), default=0)
        if worst == 0:
            break
        # Drop the last line of the least important priority.
        idx = max(i for i, (_, p) in enumerate(kept) if p == worst)
        del kept[idx]
    return fit("\n".join(t for t, _ in kept), RL_LIMIT)


def _shop_line(shop_name: object) -> str:
    return _clip(_clean(shop_name, "shop_name", allow_empty=True))


def _shop_sms(shop_name: object) -> list[str]:
    if not isinstance(shop_name, str):
        _clean(shop_name, "shop_name")  # raises the usual error
    return list(_shop_sms_line(shop_name))  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def _shop_sms_line(shop_name: str) -> tuple[str, ...]:
    # the shop's name is the same in every SMS: clean and clip it once
    shop = _clean(shop_name, "shop_name", allow_empty=True)
    return (_clip(shop, _SHOP_SMS_CHARS),) if shop else ()


# --- SMS ---------------------------------------------------------------------------------


def welcome_sms(*, shop_name: str, member_code: str, link: str | None = None) -> str:
    """Sent after enrolment: the member code is what the customer will be asked for, and
    how to stop marketing SMS (a "لغو" reply, marketing_rules.STOP_WORD), as the law asks.
    `link`: the member's page (docs/member-page.md), alone on the last line so that every
    phone's SMS app makes it a link."""
    code = _code(member_code)
    return "\n".join(
        [*_shop_sms(shop_name), f"خوش آمدید! کد عضویت: {code}", WELCOME_STOP_LINE,
         *_link_line(link)]
    )


def _link_line(link: str | None) -> list[str]:
    if link is None:
        return []
    if not isinstance(link, str) or not link.isascii() or any(c.isspace() for c in link):
        raise ValueError("link must be an address without spaces")
    return [link]


def link_sms(*, shop_name: str, link: str) -> str:
    """A fresh link to the member's page, asked for on the page with a one-time code."""
    return "\n".join([*_shop_sms(shop_name), "پیوند تازهٔ صفحهٔ شما:", *_link_line(link)])


#: the welcome SMS's last line: how a member stops marketing SMS
WELCOME_STOP_LINE = "لغو تبلیغات: ارسال «لغو»"


def purchase_sms(*, shop_name: str, amount: int, earned: int, balance: int, when: datetime,
                 link: str | None = None) -> str:
    """Sent after a settled purchase: what was paid, what it earned, what is left, and
    the member's page (`link`, last). With a link the date line gives way to it: the
    phone shows when the SMS came and the page the purchase's time, and the SMS stays in
    two parts (docs/member-page.md, "Sizes")."""
    lines = [
        *_shop_sms(shop_name),
        f"خرید: {format_rials(_amount(amount, 'amount'))} {RIALS}",
        f"اعتبار این خرید: {format_rials(_amount(earned, 'earned'))} {RIALS}",
        f"مانده اعتبار: {format_rials(_amount(balance, 'balance'))} {RIALS}",
        *(_link_line(link) if link is not None else [jalali(when)]),
    ]
    return "\n".join(lines)


def survey_line(url: str) -> str:
    """The purchase SMS's last line when this purchase is one of those asked to rate."""
    return f"نظرتان درباره این خرید؟ {url}"


def reversal_sms(
    *, shop_name: str, restored: int, taken_back: int, balance: int, when: datetime
) -> str:
    """Sent after a purchase is reversed: the credit given back, the credit taken back."""
    lines = [
        *_shop_sms(shop_name),
        "خرید شما برگشت خورد.",
        f"اعتبار برگشتی به حساب: {format_rials(_amount(restored, 'restored'))} {RIALS}",
        f"اعتبار کسرشده: {format_rials(_amount(taken_back, 'taken_back'))} {RIALS}",
        f"مانده اعتبار: {format_rials(_amount(balance, 'balance'))} {RIALS}",
        jalali(when),
    ]
    return "\n".join(lines)


def draw_winner_sms(*, shop_name: str, draw_name: str, prize: int, member_code: str) -> str:
    """Sent once to each winner of a prize draw: which draw, which prize, and the member
    code the shop asks for when the prize is collected."""
    if type(prize) is not int or prize < 1:
        raise ValueError("prize must be a rank from 1")
    name = _clip(_clean(draw_name, "draw_name"), 40)
    lines = [
        *_shop_sms(shop_name),
        f"تبریک! برندهٔ جایزهٔ {persian_digits(prize)} قرعه‌کشی «{name}» شدید.",
        f"برای دریافت، کد عضویت را بگویید: {_code(member_code)}",
    ]
    return "\n".join(lines)


_OTP = re.compile(r"[0-9]{4,10}")


def otp_sms(*, shop_name: str, code: str) -> str:
    """The one-time code, last in the text: `senders.otp_token` reads it back from there."""
    if not isinstance(code, str) or not _OTP.fullmatch(code):
        raise ValueError("code must be 4 to 10 ASCII digits")
    return "\n".join([*_shop_sms(shop_name), f"کد تأیید استفاده از اعتبار: {persian_digits(code)}"])



def link_otp_sms(*, shop_name: str, code: str) -> str:
    """The one-time code for a fresh link to the member's page, last (as otp_sms)."""
    if not isinstance(code, str) or not _OTP.fullmatch(code):
        raise ValueError("code must be 4 to 10 ASCII digits")
    return "\n".join([*_shop_sms(shop_name), f"کد پیوند تازهٔ صفحهٔ شما: {persian_digits(code)}"])


def transfer_otp_sms(*, shop_name: str, amount: int, to_phone: str, code: str) -> str:
    """The code that confirms a credit transfer, naming the amount and the receiving phone
    (someone who tricked a member into asking for it is then seen for what it is); the
    code last, as in `otp_sms`."""
    if not isinstance(code, str) or not _OTP.fullmatch(code):
        raise ValueError("code must be 4 to 10 ASCII digits")
    return "\n".join([
        *_shop_sms(shop_name),
        f"انتقال {format_rials(_amount(amount, 'amount'))} {RIALS} اعتبار به "
        f"{persian_digits(_clean(to_phone, 'to_phone'))}",
        "این کد را به کسی ندهید.",
        f"کد تأیید انتقال: {persian_digits(code)}",
    ])


def transfer_sent_sms(*, shop_name: str, amount: int, to_phone: str, balance: int,
                      when: datetime) -> str:
    """The sender's confirmation that a transfer was made."""
    return "\n".join([
        *_shop_sms(shop_name),
        f"{format_rials(_amount(amount, 'amount'))} {RIALS} اعتبار به "
        f"{persian_digits(_clean(to_phone, 'to_phone'))} منتقل شد.",
        f"مانده اعتبار: {format_rials(_amount(balance, 'balance'))} {RIALS}",
        jalali(when),
    ])


def transfer_received_sms(*, shop_name: str, amount: int, from_phone: str, balance: int,
                          when: datetime) -> str:
    """The receiver's notice; the giver's phone masked (the giver chose the receiver, not
    the other way round)."""
    return "\n".join([
        *_shop_sms(shop_name),
        f"{format_rials(_amount(amount, 'amount'))} {RIALS} اعتبار از "
        f"{persian_digits(mask_phone(_clean(from_phone, 'from_phone')))} به شما رسید.",
        f"مانده اعتبار: {format_rials(_amount(balance, 'balance'))} {RIALS}",
        jalali(when),
    ])


# --- terminal display (MG) ---------------------------------------------------------------


def enroll_display(*, new: bool, member_code: str, referrer_ignored: bool = False) -> str:
    """`referrer_ignored`: the referrer typed was not a member's phone, so the member was
    enrolled without one; the cashier must see that, or nobody would know."""
    if not isinstance(new, bool):
        raise ValueError("new must be a bool")
    code = _code(member_code)
    if new and referrer_ignored:
        return _display(
            [f"عضویت انجام شد، معرف نامعتبر. کد: {code}", "عضویت انجام شد، معرف نامعتبر"]
        )
    if new:
        return _display([f"عضویت انجام شد. کد: {code}", "عضویت انجام شد."])
    return _display([f"شما عضو باشگاه هستید. کد: {code}", "شما عضو باشگاه هستید."])


def inquiry_display(*, discount: int, net: int, tier: str) -> str:
    d = format_rials(_amount(discount, "discount"))
    n = format_rials(_amount(net, "net"))
    label = tier_label(tier)
    if discount == 0:
        return _display(
            [f"{label}: بدون تخفیف، پرداخت {n}", f"بدون تخفیف، پرداخت {n}", f"پرداخت {n}"]
        )
    return _display([f"{label}: تخفیف {d}، پرداخت {n}", f"تخفیف {d}، پرداخت {n}", f"پرداخت {n}"])


def otp_display() -> str:
    return _display(["کد تأیید پیامک‌شده را وارد کنید"])


# --- receipt (RL) ------------------------------------------------------------------------


def enroll_receipt(*, shop_name: str, member_code: str, balance: int, new: bool) -> str:
    if not isinstance(new, bool):
        raise ValueError("new must be a bool")
    status = "عضویت شما انجام شد" if new else "شما عضو باشگاه هستید"
    return _receipt(
        [
            (_shop_line(shop_name), 2),
            (HEADER, 1),
            (status, 0),
            (_clip(f"کد عضویت: {_code(member_code)}"), 0),
            (f"اعتبار: {format_rials(_amount(balance, 'balance'))} {RIALS}", 0),
        ]
    )


def inquiry_receipt(
    *,
    gross: int,
    discount: int,
    net: int,
    balance: int,
    tier: str,
    offers: Sequence[str] = (),
) -> str:
    if isinstance(offers, str):
        raise ValueError("offers must be a sequence of texts, not one text")
    label = tier_label(tier)
    lines: list[tuple[str, int]] = [
        (HEADER, 2),
        (_tier_line(label), 1),
        (f"مبلغ خرید: {format_rials(_amount(gross, 'gross'))}", 0),
        (f"تخفیف اعتبار: {format_rials(_amount(discount, 'discount'))}", 0),
        (f"قابل پرداخت: {format_rials(_amount(net, 'net'))}", 0),
        (f"مانده اعتبار: {format_rials(_amount(balance, 'balance'))}", 0),
        (AMOUNTS_IN_RIALS, 0),
    ]
    for offer in offers:
        text = _clean(offer, "offer", allow_empty=True)
        if text:
            lines.append((_clip(f"- {text}"), 3))
    return _receipt(lines)


def advice_receipt(*, earned: int, balance: int, tier: str) -> str:
    label = tier_label(tier)
    return _receipt(
        [
            (HEADER, 2),
            (f"اعتبار این خرید: {format_rials(_amount(earned, 'earned'))}", 0),
            (f"مانده اعتبار: {format_rials(_amount(balance, 'balance'))}", 0),
            (_tier_line(label), 1),
            (AMOUNTS_IN_RIALS, 0),
        ]
    )

#: {name} in a marketing SMS to a member who gave no name
NO_NAME = "مشتری گرامی"
