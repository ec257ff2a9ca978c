"""Hypothesis strategies shared by the protocols tests: valid field dicts and messages."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from protocols import iso8583, messages
from protocols.messages import Header

DIGITS = string.digits
ALNUM = string.ascii_letters + string.digits
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
# Persian letters and digits, Arabic-Indic digits, ASCII, a 4-byte emoji.
TEXT_ALPHABET = st.sampled_from(
    list(PRINTABLE) + list("سلامخوشآمدیدبهباشگاهمشتریان۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩\n") + ["🎁"]
)


def _charset(charset: str) -> str:
    return {"n": DIGITS, "an": ALNUM, "ans": PRINTABLE}[charset]


def utf8_text(max_bytes: int) -> st.SearchStrategy[str]:
    return st.text(TEXT_ALPHABET, max_size=max_bytes).filter(lambda s: len(s.encode()) <= max_bytes)


def field_value(spec: iso8583.FieldSpec) -> st.SearchStrategy[Any]:
    if spec.charset == "b":
        return st.binary(min_size=spec.length, max_size=spec.length)
    if spec.charset == "utf8":
        return utf8_text(spec.length)
    alphabet = _charset(spec.charset)
    if spec.kind == "fixed":
        return st.text(alphabet, min_size=spec.length, max_size=spec.length)
    return st.text(alphabet, max_size=spec.length)


@st.composite
def field_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Any message the table allows: an MTI and any subset of the data fields."""
    out: dict[str, Any] = {"t": draw(st.text(DIGITS, min_size=4, max_size=4))}
    for spec in iso8583.DATA_FIELDS:
        if draw(st.booleans()):
            out[spec.key] = draw(field_value(spec))
    return out


def _fixed(alphabet: str, n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=n, max_size=n)


@st.composite
def headers(draw: st.DrawFn) -> Header:
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    hms = draw(st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)))
    time = "".join(f"{x:02d}" for x in hms)
    return Header(
        transmitted_at=f"{month:02d}{day:02d}{time}",
        stan=draw(_fixed(DIGITS, 6)),
        local_time=time,
        local_date=f"{month:02d}{day:02d}",
        terminal_id=draw(_fixed(ALNUM, 8)),
        merchant_id=draw(_fixed(PRINTABLE, 15)),
    )


amounts = st.integers(1, 10**12 - 1)
tlv_text = st.text(TEXT_ALPHABET, min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 120)
quote_ids = st.text(PRINTABLE, min_size=1, max_size=32)


@st.composite
def identities(draw: st.DrawFn) -> tuple[str | None, str | None]:
    """(phone, card): exactly one set."""
    value = draw(tlv_text)
    return (value, None) if draw(st.booleans()) else (None, value)


@st.composite
def requests(draw: st.DrawFn) -> messages.Request:
    header = draw(headers())
    kind = draw(st.sampled_from(["network", "enroll", "inquiry", "advice", "reversal"]))
    opt_text = st.none() | tlv_text
    pan = st.none() | st.text(PRINTABLE, max_size=19)
    if kind == "network":
        return messages.NetworkRequest(header, draw(st.sampled_from(messages.NETWORK_CODES)))
    if kind == "enroll":
        return messages.EnrollmentRequest(header, draw(tlv_text), draw(opt_text))
    if kind == "inquiry":
        phone, card = draw(identities())
        return messages.InquiryRequest(
            header,
            draw(amounts),
            phone=phone,
            card=card,
            redeem=draw(st.none() | st.integers(0, 10**12 - 1)),
            otp=draw(opt_text),
            pan=draw(pan),
        )
    rrn = draw(_fixed(ALNUM, 12))
    if kind == "advice":
        quote = draw(st.none() | quote_ids)
        phone, card = (None, None) if quote is not None else draw(identities())
        return messages.PurchaseAdvice(
            header,
            draw(amounts),
            rrn,
            draw(st.none() | _fixed(ALNUM, 6)),
            draw(_fixed(ALNUM, 2)),
            draw(amounts),
            quote_id=quote,
            phone=phone,
            card=card,
            pan=draw(pan),
        )
    quote = draw(st.none() | quote_ids)
    phone, card = (None, None) if quote is not None else draw(st.just((None, None)) | identities())
    return messages.ReversalAdvice(
        header, draw(amounts), rrn, quote_id=quote, phone=phone, card=card
    )
