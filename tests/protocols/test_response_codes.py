"""One enum of PROTOCOL.md 3.5 codes; every refusal error carries one as `.response_code`."""

from __future__ import annotations

import json

import pytest

from protocols import iso8583, messages, mqtt, tlv
from protocols.identity import IdentityError, normalize_card, normalize_phone
from protocols.response_codes import CodedError, ResponseCode


def test_codes_are_their_two_digit_strings() -> None:
    assert ResponseCode.APPROVED == "00" and ResponseCode.MALFUNCTION == "96"
    assert json.dumps({"code": ResponseCode.FORMAT_ERROR}) == '{"code": "30"}'
    assert all(len(c) == 2 and c.isdigit() for c in ResponseCode)
    assert ResponseCode("14") is ResponseCode.UNKNOWN_MEMBER


def test_coded_error_default_and_override() -> None:
    assert CodedError("x").response_code is ResponseCode.MALFUNCTION
    err = CodedError("x", response_code=ResponseCode.SECURITY_VIOLATION)
    assert err.response_code is ResponseCode.SECURITY_VIOLATION
    assert isinstance(err, ValueError)


def test_protocol_errors_carry_their_code() -> None:
    with pytest.raises(iso8583.FormatError) as fmt:
        iso8583.decode(b"01")
    with pytest.raises(tlv.FormatError) as field48:
        tlv.decode("MG")
    with pytest.raises(IdentityError) as phone:
        normalize_phone("12")
    with pytest.raises(IdentityError) as card:
        normalize_card("1234")
    with pytest.raises(mqtt.SchemaError) as schema:
        mqtt.check_terminal_id("bad id!")
    codes = [e.value.response_code for e in (fmt, field48, phone, card, schema)]
    assert codes == ["30", "30", "14", "14", "30"]
    for e in (fmt, field48, phone, card, schema):
        assert isinstance(e.value, CodedError)
        assert isinstance(e.value.response_code, ResponseCode)


def test_message_error_takes_enum_or_its_string() -> None:
    err = messages.MessageError("13", "4", "the amount is zero")
    assert err.response_code is ResponseCode.INVALID_AMOUNT
    assert isinstance(err, CodedError)
    with pytest.raises(ValueError):
        messages.MessageError("77", "4", "no such code")


def test_backend_answers_only_codes_it_may_give() -> None:
    assert ResponseCode.SECURITY_VIOLATION not in mqtt.RESPONSE_CODES
    assert ResponseCode.BACKEND_UNREACHABLE not in mqtt.RESPONSE_CODES
    assert ResponseCode.APPROVED in mqtt.RESPONSE_CODES
