"""Field 48 loyalty TLV, PROTOCOL.md 3.3: `TAG(2 letters) LEN(3 digits) VALUE`.

Lengths count UTF-8 bytes, not characters, so Persian text in MG/RL is measured the way
the terminal's buffer sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from protocols.iso8583 import FormatError

FIELD: Final = "48"
MAX_FIELD: Final = 999
MAX_VALUE: Final = 999
#: Byte limits of PROTOCOL.md 3.3 for the texts the agent sends to the terminal.
LIMITS: Final = {"MG": 64, "RL": 400}


def _is_tag(tag: bytes) -> bool:
    """Two ASCII letters (PROTOCOL.md 3.3); lower case too, so unknown vendor tags such
    as `ab` are ignored as the protocol says rather than refused as a format error."""
    return len(tag) == 2 and tag.isalpha()


def decode(value: str) -> dict[str, str]:
    """The tags of a field 48 value, in order; unknown tags are kept for the caller to ignore."""
    if not isinstance(value, str):
        raise FormatError(FIELD, "field 48 must be text")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(FIELD, "field 48 is not valid UTF-8") from None
    out: dict[str, str] = {}
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 5:
            raise FormatError(FIELD, f"truncated tag header at byte {pos}")
        tag = data[pos : pos + 2]
        digits = data[pos + 2 : pos + 5]
        if not _is_tag(tag):
            raise FormatError(FIELD, f"tag {tag!r} at byte {pos} is not two ASCII letters")
        if not digits.isdigit():
            raise FormatError(FIELD, f"length {digits!r} of tag {tag.decode()} is not 3 digits")
        stop = pos + 5 + int(digits)
        if stop > end:
            raise FormatError(FIELD, f"tag {tag.decode()} runs past the field")
        name = tag.decode("ascii")
        if name in out:
            raise FormatError(FIELD, f"tag {name} is repeated")
        try:
            out[name] = data[pos + 5 : stop].decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(FIELD, f"tag {name} cuts a UTF-8 character") from None
        pos = stop
    return out


def encode(items: Mapping[str, str]) -> str:
    """A field 48 value; refuses bad tags, oversized values and MG/RL beyond their limits."""
    parts: list[bytes] = []
    for tag, value in items.items():
        if not isinstance(tag, str) or not tag.isascii() or not _is_tag(tag.encode()):
            raise ValueError(f"TLV tag {tag!r} must be two ASCII letters")
        if not isinstance(value, str):
            raise ValueError(f"TLV value of {tag} must be a string, got {type(value).__name__}")
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"TLV value of {tag} is not encodable as UTF-8") from None
        limit = LIMITS.get(tag, MAX_VALUE)
        if len(raw) > limit:
            raise ValueError(f"TLV value of {tag} is {len(raw)} bytes, at most {limit} allowed")
        parts.append(b"%s%03d%s" % (tag.encode(), len(raw), raw))
    data = b"".join(parts)
    if len(data) > MAX_FIELD:
        raise ValueError(f"field 48 would be {len(data)} bytes, at most {MAX_FIELD} allowed")
    return data.decode("utf-8")


def fit(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes without splitting a character."""
    if limit < 0:
        raise ValueError("limit must not be negative")
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")
