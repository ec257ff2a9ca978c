"""Field 48 TLV: byte-counted lengths, refusals, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import tlv
from protocols.iso8583 import FormatError
from tests.protocols.protocols_strategies import TEXT_ALPHABET

tags = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2).filter(
    lambda t: t not in tlv.LIMITS
)
values = st.text(TEXT_ALPHABET, max_size=30)


def test_known_answer() -> None:
    assert tlv.encode({"PN": "09121234567", "RD": "20000"}) == "PN01109121234567RD00520000"
    assert tlv.decode("PN01109121234567RD00520000") == {"PN": "09121234567", "RD": "20000"}
    assert tlv.encode({}) == "" and tlv.decode("") == {}


def test_lengths_count_utf8_bytes() -> None:
    assert tlv.encode({"MG": "سلام"}) == "MG008سلام"
    assert tlv.decode("PN022۰۹۱۲۱۲۳۴۵۶۷") == {"PN": "۰۹۱۲۱۲۳۴۵۶۷"}
    assert tlv.decode("RL004🎁") == {"RL": "🎁"}


def test_unknown_tags_are_kept_and_empty_values_allowed() -> None:
    assert tlv.decode("ZZ003abcPN000") == {"ZZ": "abc", "PN": ""}


def test_lower_case_tags_are_ascii_letters_too() -> None:
    """PROTOCOL.md 3.3: a tag is 2 ASCII letters and unknown tags MUST be ignored, so a
    vendor's lower-case tag is kept for the caller to ignore, not a format error."""
    assert tlv.decode("ab001xPN01109121234567") == {
        "ab": "x",
        "PN": "09121234567",
    }
    assert tlv.encode({"zq": "1"}) == "zq0011"
    assert tlv.decode("pn0011") == {"pn": "1"}  # not PN: tags are case-sensitive


@pytest.mark.parametrize(
    "value",
    [
        "PN01109121234567PN0011",  # repeated tag
        "PN012" + "09121234567",  # runs past the field
        "PN0",  # truncated header
        "PN01",
        "P10011",
        "PNx011",
        "PN0a11",
        "PN001س",  # cuts a UTF-8 character
        "MG003سلام",
    ],
)
def test_decode_refuses_as_field_48(value: str) -> None:
    with pytest.raises(FormatError) as info:
        tlv.decode(value)
    assert info.value.field == "48" and info.value.response_code == "30"


def test_decode_refuses_non_text() -> None:
    with pytest.raises(FormatError):
        tlv.decode(b"PN001x")  # type: ignore[arg-type]
    with pytest.raises(FormatError):
        tlv.decode("PN001\udc80")  # lone surrogate: not UTF-8


@pytest.mark.parametrize(
    "items",
    [
        {"MG": "x" * 65},
        {"MG": "س" * 33},  # 66 bytes
        {"RL": "x" * 401},
        {"RL": "سلام\n" * 45},  # 225 characters, 405 bytes
        {"ZZ": "x" * 1000},
        {"A1": "x"},
        {"ABC": "x"},
        {"ÄB": "x"},
        {"PN": 912},
        {"AA": "x" * 500, "BB": "x" * 500},  # field over 999 bytes
    ],
)
def test_encode_refuses(items: dict) -> None:
    with pytest.raises(ValueError):
        tlv.encode(items)


def test_limits_are_inclusive() -> None:
    assert tlv.decode(tlv.encode({"MG": "س" * 32}))["MG"] == "س" * 32
    assert len(tlv.encode({"RL": "x" * 400}).encode()) == 405


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("hello", 10, "hello"),
        ("hello", 3, "hel"),
        ("سلام", 5, "سل"),
        ("سلام", 4, "سل"),
        ("سلام", 1, ""),
        ("a🎁b", 4, "a"),
        ("", 0, ""),
    ],
)
def test_fit(text: str, limit: int, expected: str) -> None:
    assert tlv.fit(text, limit) == expected


@settings(max_examples=150, deadline=None)
@given(st.text(TEXT_ALPHABET, max_size=100), st.integers(0, 300))
def test_fit_properties(text: str, limit: int) -> None:
    cut = tlv.fit(text, limit)
    assert len(cut.encode()) <= limit
    assert text.startswith(cut)
    assert len(cut.encode()) > limit - 4 or cut == text


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(tags, values, max_size=8))
def test_round_trip(items: dict[str, str]) -> None:
    encoded = tlv.encode(items)
    assert tlv.decode(encoded) == items
    assert list(tlv.decode(encoded)) == list(items)


@settings(max_examples=150, deadline=None)
@given(st.text(st.sampled_from("PNMG0123456789سx"), max_size=30))
def test_decode_garbage_only_raises_format_error(value: str) -> None:
    try:
        items = tlv.decode(value)
    except FormatError as exc:
        assert exc.field == "48"
        return
    assert tlv.decode(tlv.encode({k: v for k, v in items.items() if k not in tlv.LIMITS})) == {
        k: v for k, v in items.items() if k not in tlv.LIMITS
    }
