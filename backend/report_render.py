"""The period report as people and programs read it: text, CSV or JSON, Persian or English.

Persian by default, as the shop owner reads it: Persian labels and digits, Jalali dates in
Tehran time. CSV and JSON keep numbers in ASCII digits without separators, so a
spreadsheet or a script can add them up; only their labels follow the language.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, time, timedelta

from backend.report import MONEY, Figures
from backend.texts import columns, jalali
from protocols import persian
from protocols.persian import TEHRAN, format_rials, persian_digits

LANGS = ("fa", "en")
FORMATS = ("text", "csv", "json")

LABELS: dict[str, dict[str, str]] = {
    "fa": {
        "from": "از",
        "to": "تا",
        "purchases": "خرید",
        "sales": "فروش (ریال)",
        "declined": "پرداخت ناموفق",
        "reversed": "خرید برگشت\u200cخورده",
        "new_members": "عضو جدید",
        "returning_members": "مشتری بازگشته",
        "credit_issued": "اعتبار داده\u200cشده (ریال)",
        "credit_redeemed": "اعتبار خرج\u200cشده (ریال)",
        "credit_expired": "اعتبار منقضی\u200cشده (ریال)",
        "credit_reversed": "جابه\u200cجایی اعتبار با برگشت خرید (ریال)",
        "credit_adjusted": "اصلاح اعتبار (ریال)",
        "sms_sent": "پیامک فرستاده\u200cشده",
        "sms_pending": "پیامک در صف",
        "sms_failed": "پیامک ناموفق",
    },
    "en": {
        "from": "from",
        "to": "to",
        "purchases": "purchases",
        "sales": "sales (rials charged)",
        "declined": "declined payments",
        "reversed": "reversed purchases",
        "new_members": "new members",
        "returning_members": "returning members",
        "credit_issued": "credit issued",
        "credit_redeemed": "credit redeemed",
        "credit_expired": "credit expired",
        "credit_reversed": "credit moved by reversals",
        "credit_adjusted": "credit adjusted",
        "sms_sent": "SMS sent",
        "sms_pending": "SMS pending",
        "sms_failed": "SMS failed",
    },
}

_TITLE = {"fa": "گزارش باشگاه مشتریان", "en": "loyalty club report"}
_OPEN = {"fa": ("آغاز", "اکنون"), "en": ("the beginning", "now")}
_END_OF = {"fa": "پایان {}", "en": "the end of {}"}
_TEHRAN_TIME = {"fa": "به وقت تهران", "en": "Tehran time"}


def render(figures: Figures, *, lang: str = "fa", fmt: str = "text") -> str:
    if lang not in LANGS:
        raise ValueError(f"report language {lang!r} is not one of {', '.join(LANGS)}")
    if fmt == "text":
        return _text(figures, lang)
    if fmt == "csv":
        return _csv(figures, lang)
    if fmt == "json":
        return _json(figures, lang)
    raise ValueError(f"report format {fmt!r} is not one of {', '.join(FORMATS)}")


def _jalali_ascii(when: datetime) -> str:
    """`1405/09/02 00:00`: the Jalali date-time in digits a program reads."""
    return persian.jalali(when)


def _iso(when: datetime) -> str:
    return when.astimezone(TEHRAN).isoformat(timespec="seconds")


def _bound(when: datetime | None, lang: str, which: int) -> str:
    """A bound as the owner asked for it: a whole day when it is a Tehran midnight."""
    if when is None:
        return _OPEN[lang][which]
    local = when.astimezone(TEHRAN)
    whole_day = local.time() == time(0)
    if whole_day and which == 1:  # `--to DAY` ends at the midnight after DAY
        local -= timedelta(minutes=1)
    shown = jalali(local) if lang == "fa" else f"{local:%Y-%m-%d %H:%M}"
    if not whole_day:
        return shown
    day = shown.split(" ")[0]
    return day if which == 0 else _END_OF[lang].format(day)


def _value(name: str, value: int, lang: str) -> str:
    if lang == "fa":
        return format_rials(value) if name in MONEY else persian_digits(str(value))
    return f"{value:,}"


def _text(f: Figures, lang: str) -> str:
    labels = LABELS[lang]
    period = (
        f"{labels['from']} {_bound(f.since, lang, 0)} {labels['to']} {_bound(f.until, lang, 1)}"
        f" ({_TEHRAN_TIME[lang]})"
    )
    rows = [(labels[name], _value(name, value, lang)) for name, value in f.items()]
    width = max(columns(label) for label, _ in rows) + 2
    lines = [_TITLE[lang], period]
    # pad by printer cells, not code points: a zero-width non-joiner takes no column
    lines += [f"  {label}{' ' * (width - columns(label))}{value:>16}" for label, value in rows]
    return "\n".join(lines)


def _period(f: Figures, lang: str) -> list[tuple[str, str]]:
    """(name, value) of the bounds for CSV: Jalali in Persian, ISO 8601 in English."""
    show = _jalali_ascii if lang == "fa" else _iso
    return [
        (name, show(when) if when is not None else "")
        for name, when in (("from", f.since), ("to", f.until))
    ]


def _csv(f: Figures, lang: str) -> str:
    labels = LABELS[lang]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["figure", "label", "value"])
    for name, value in _period(f, lang):
        out.writerow([name, labels[name], value])
    for name, number in f.items():
        out.writerow([name, labels[name], number])
    return buf.getvalue().rstrip("\n")


def _json(f: Figures, lang: str) -> str:
    doc = {
        "from": _iso(f.since) if f.since is not None else None,
        "to": _iso(f.until) if f.until is not None else None,
        "from_jalali": _jalali_ascii(f.since) if f.since is not None else None,
        "to_jalali": _jalali_ascii(f.until) if f.until is not None else None,
        "figures": dict(f.items()),
        "money": sorted(MONEY),
        "labels": {name: LABELS[lang][name] for name, _ in f.items()},
    }
    return json.dumps(doc, ensure_ascii=False, indent=2)
