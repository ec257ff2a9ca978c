"""Field 64 MAC: NIST SP 800-38B known answers, signing and verification."""

from __future__ import annotations

import iso8583 as pyiso
import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import iso8583, mac
from protocols.iso8583 import FormatError
from tests.protocols.protocols_strategies import field_dicts

NIST_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
NIST_MESSAGE = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
# NIST SP 800-38B, appendix D.1 (AES-128), examples 1-4.
NIST_TAGS = {
    0: "bb1d6929e95937287fa37d129b756746",
    16: "070a16b46b4d4144f79bdd9dd04a287c",
    40: "dfa66747de9ae63030ca32611497c827",
    64: "51f0bebf7e3b9d92fc49741779363cfe",
}
KEY = bytes(range(16))
ADVICE = {
    "t": "0220",
    "3": "000000",
    "4": "000001480000",
    "7": "1123194005",
    "11": "000124",
    "12": "231005",
    "13": "1123",
    "37": "123456789012",
    "38": "AB12CD",
    "39": "00",
    "41": "T0000001",
    "42": "M00000000000001",
    "48": "GA0071500000QI004Q123",
}


@pytest.mark.parametrize("length", sorted(NIST_TAGS))
def test_nist_sp800_38b_aes128(length: int) -> None:
    tag = bytes.fromhex(NIST_TAGS[length])
    assert mac.cmac(NIST_KEY, NIST_MESSAGE[:length]) == tag
    assert mac.compute(NIST_KEY, NIST_MESSAGE[:length]) == tag[:8]


def test_sign_covers_mti_to_field_64_with_bit_64_set() -> None:
    fields = dict(ADVICE)
    raw = mac.sign(fields, KEY)
    assert raw[4 + 7] & 0x01  # bit 64 = last bit of the primary bitmap
    assert raw[-8:] == fields["64"] == mac.compute(KEY, raw[:-8])
    assert iso8583.decode(raw)["64"] == fields["64"]
    assert mac.verify(raw, KEY)


def test_sign_with_a_field_after_64() -> None:
    fields = {**ADVICE, "70": "301"}
    raw = mac.sign(fields, KEY)
    at = raw.index(fields["64"])
    assert raw[at + 8 :] == b"301"
    assert fields["64"] == mac.compute(KEY, raw[:at])
    assert mac.verify(raw, KEY)


def test_verify_refuses_wrong_key_tampering_and_no_mac() -> None:
    raw = mac.sign(dict(ADVICE), KEY)
    assert not mac.verify(raw, bytes(16))
    assert not mac.verify(iso8583.encode(ADVICE), KEY)
    tampered = raw.replace(b"000001480000", b"000000000001")
    assert not mac.verify(tampered, KEY)
    flipped = raw[:-1] + bytes([raw[-1] ^ 1])
    assert not mac.verify(flipped, KEY)


def test_verify_of_a_malformed_message_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        mac.verify(b"0220garbage", KEY)


@pytest.mark.parametrize("key", [b"", bytes(15), bytes(17), "0" * 16])
def test_keys_must_be_16_bytes(key: bytes) -> None:
    with pytest.raises(ValueError):
        mac.compute(key, b"x")
    with pytest.raises(ValueError):
        mac.sign(dict(ADVICE), key)


def test_sign_refuses_bad_fields_and_leaves_them_alone() -> None:
    fields = {**ADVICE, "4": "12"}
    with pytest.raises(FormatError):
        mac.sign(fields, KEY)
    assert "64" not in fields


@settings(max_examples=100, deadline=None)
@given(field_dicts(), st.binary(min_size=16, max_size=16))
def test_sign_then_verify_any_message(fields: dict, key: bytes) -> None:
    raw = mac.sign(fields, key)
    assert mac.verify(raw, key)
    assert iso8583.decode(raw)["64"] == fields["64"]
    other = bytes(b ^ 0x5A for b in key)
    assert not mac.verify(raw, other)


def test_mac_matches_an_independent_computation_over_pyiso8583_bytes() -> None:
    """Third-party tooling can MAC a message the same way: bytes up to field 64, bit set."""
    doc = {**ADVICE, "64": "00" * 8}
    raw, _ = pyiso.encode(doc, iso8583.pyiso8583_spec())
    c = CMAC(algorithms.AES(KEY))
    c.update(bytes(raw[:-8]))
    expected = c.finalize()[:8]
    fields = dict(ADVICE)
    assert mac.sign(fields, KEY) == bytes(raw[:-8]) + expected
