"""Field 64 MAC, PROTOCOL.md 3.4: leftmost 8 bytes of AES-128-CMAC (NIST SP 800-38B).

The MAC covers the encoded message from the MTI up to, not including, field 64's own
bytes, with bit 64 already set in the bitmap; `sign` therefore encodes once with a
placeholder and fills the MAC in place.
"""

from __future__ import annotations

import hmac
from collections.abc import MutableMapping
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from protocols import iso8583

KEY_SIZE: Final = 16
MAC_SIZE: Final = 8
FIELD: Final = "64"


def check_key(key: bytes) -> bytes:
    """The key as bytes; `ValueError` unless it is 16 bytes (check configuration early)."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise ValueError(f"the MAC key must be {KEY_SIZE} bytes")
    return bytes(key)


_check_key = check_key  # the name the first agent version used


def cmac(key: bytes, data: bytes) -> bytes:
    """The full 16-byte AES-CMAC tag (for known-answer tests)."""
    c = CMAC(algorithms.AES(check_key(key)))
    c.update(bytes(data))
    return c.finalize()


def compute(key: bytes, data: bytes) -> bytes:
    """The 8-byte MAC of `data`."""
    return cmac(key, data)[:MAC_SIZE]


def sign(fields: MutableMapping[str, Any], key: bytes) -> bytes:
    """Set field 64 of `fields` to the MAC of the message and return the encoded message."""
    check_key(key)
    draft = dict(fields)
    draft[FIELD] = bytes(MAC_SIZE)
    data, offset = iso8583._encode(draft)
    mac = compute(key, data[:offset])
    fields[FIELD] = mac
    return data[:offset] + mac + data[offset + MAC_SIZE :]


def verify(raw: bytes, key: bytes) -> bool:
    """True when field 64 is present and right; a malformed message raises `FormatError`."""
    check_key(key)
    fields, offset = iso8583._decode(raw)
    if offset < 0:
        return False
    expected = compute(key, bytes(raw[:offset]))
    return hmac.compare_digest(expected, fields[FIELD])
