"""Persian SMS templates with named placeholders, SMS part counting and cost, pure.

A template is checked when the owner saves it: an unknown placeholder, a positional `{}`,
a format spec or an unbalanced brace is refused with an error naming it, so a campaign
never fails at send time. Rendering writes numbers in Persian digits, money in rials
with the Persian separator, dates in the Jalali calendar; the link stays ASCII (a phone
must open it).

Parts: a text all in the GSM 03.38 alphabet (basic table, extension table counting two
septets) goes as GSM-7: 160 septets in one part, 153 per part when split (the UDH takes
7). Anything else, Persian above all, goes as UCS-2: 70 UTF-16 units alone, 67 per part.
A split never cuts an escape pair or a surrogate pair, as gateways do.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

import jdatetime

from backend.texts import RIALS
from protocols.persian import format_rials, jalali, persian_digits

#: not printable to Python, but text: a space, the zero-width non-joiner and joiner
_KEPT = frozenset(" \u200c\u200d")
#: Every placeholder a template may use, and how its value is written.
PLACEHOLDERS: dict[str, str] = {
    "name": "text",
    "shop": "text",
    "tier": "text",
    "occasion": "text",
    "link": "ascii",
    "balance": "rials",
    "amount": "rials",
    "gift": "rials",
    "next_threshold": "rials",
    "expiry_date": "date",
    "days": "number",
    "years": "number",
}

# GSM 03.38 default alphabet (basic table) and the extension table (ESC + char).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


class TemplateError(ValueError):
    """A template the owner cannot save, or values it cannot be rendered with."""


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    placeholders: frozenset[str]

    @classmethod
    def parse(cls, text: str, allowed: Iterable[str] = PLACEHOLDERS) -> Template:
        if not isinstance(text, str) or not text.strip():
            raise TemplateError("the template is empty")
        allowed = frozenset(allowed)
        names: set[str] = set()
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise TemplateError(f"unbalanced brace in the template ({exc}); "
                                "write {{ or }} for a brace itself") from None
        for _literal, name, spec, conversion in fields:
            if name is None:
                continue
            if name == "" or name.isdigit():
                raise TemplateError("a placeholder needs a name, e.g. {name}")
            if spec or conversion:
                raise TemplateError(f"placeholder {{{name}}} takes no format or conversion")
            if name not in allowed:
                known = ", ".join("{" + n + "}" for n in sorted(allowed))
                raise TemplateError(f"unknown placeholder {{{name}}}; known: {known}")
            names.add(name)
        return cls(text, frozenset(names))

    def render(self, values: Mapping[str, object]) -> str:
        missing = sorted(self.placeholders - set(values))
        if missing:
            raise TemplateError(f"no value for placeholder(s) {', '.join(missing)}")
        return self.text.format_map({n: _written(n, values[n]) for n in self.placeholders})


def _written(name: str, value: object) -> str:
    how = PLACEHOLDERS.get(name, "text")
    if how == "rials":
        if not isinstance(value, int) or isinstance(value, bool):
            raise TemplateError(f"{{{name}}} is an amount of rials, not {value!r}")
        return f"{format_rials(value)} {RIALS}"
    if how == "number":
        if not isinstance(value, int) or isinstance(value, bool):
            raise TemplateError(f"{{{name}}} is a whole number, not {value!r}")
        return persian_digits(value)
    if how == "date":
        if isinstance(value, datetime):
            return persian_digits(jalali(value, "%Y/%m/%d"))
        if isinstance(value, date):
            return persian_digits(jdatetime.date.fromgregorian(date=value).strftime("%Y/%m/%d"))
        raise TemplateError(f"{{{name}}} is a date, not {value!r}")
    if how == "ascii":
        text = str(value)
        if not text.isascii():
            raise TemplateError(f"{{{name}}} must be ASCII (a link), not {text!r}")
        return text
    if value is None:
        raise TemplateError(f"no value for placeholder {name}")
    # member-given text: control characters would break an SMS body; the zero-width
    # (non-)joiner is Persian spelling ("نقره‌ای"), not a control
    return "".join(c for c in str(value) if c.isprintable() or c in _KEPT)


@dataclass(frozen=True, slots=True)
class Parts:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets or UTF-16 units
    parts: int


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _pack(sizes: list[int], single: int, multi: int) -> int:
    if sum(sizes) <= single:
        return 1 if sizes else 0
    parts, room = 1, multi
    for size in sizes:
        if size > room:
            parts, room = parts + 1, multi
        room -= size
    return parts


def sms_parts(text: str) -> Parts:
    """How many SMS parts `text` needs, in the encoding a gateway would choose."""
    if is_gsm7(text):
        sizes = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return Parts("GSM-7", sum(sizes), _pack(sizes, GSM7_SINGLE, GSM7_MULTI))
    sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return Parts("UCS-2", sum(sizes), _pack(sizes, UCS2_SINGLE, UCS2_MULTI))


def sms_cost(text: str, price_per_part: int) -> int:
    """What one SMS costs in rials at the club's per-part price."""
    if not isinstance(price_per_part, int) or price_per_part < 0:
        raise ValueError("the per-part price is a non-negative number of rials")
    return sms_parts(text).parts * price_per_part


@dataclass(frozen=True, slots=True)
class CampaignEstimate:
    members: int
    parts: int  # all parts of all messages
    max_parts: int  # the longest message's parts
    cost: int


def estimate(template: Template, per_member: Iterable[Mapping[str, object]],
             price_per_part: int) -> CampaignEstimate:
    """Members reached, parts and cost of a campaign, rendered for each member
    (a long name can push one member's text into another part)."""
    members = parts = longest = 0
    for values in per_member:
        n = sms_parts(template.render(values)).parts
        members, parts, longest = members + 1, parts + n, max(longest, n)
    return CampaignEstimate(members, parts, longest, parts * price_per_part)
