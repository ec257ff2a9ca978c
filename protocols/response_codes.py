"""The response codes of PROTOCOL.md 3.5, once, and the error base that carries one.

Both the agent (field 39) and the backend (the `code` of an MQTT response) speak these
codes, so they are spelled here and nowhere else. `ResponseCode` is a `StrEnum`: a member
compares equal to its two-digit string and serialises as it, so it goes straight into
field 39 and into JSON.
"""

from __future__ import annotations

from enum import StrEnum


class ResponseCode(StrEnum):
    APPROVED = "00"
    INVALID_TRANSACTION = "12"
    INVALID_AMOUNT = "13"
    UNKNOWN_MEMBER = "14"
    FORMAT_ERROR = "30"
    NOT_ENOUGH_CREDIT = "51"
    WRONG_OTP = "55"
    SECURITY_VIOLATION = "63"
    BACKEND_UNREACHABLE = "91"
    MALFUNCTION = "96"


class CodedError(ValueError):
    """An error that decides a response: `response_code` is what field 39 (or the MQTT
    response's `code`) should say. Subclasses set a class default or pass one."""

    response_code: ResponseCode = ResponseCode.MALFUNCTION

    def __init__(self, *args: object, response_code: ResponseCode | None = None) -> None:
        super().__init__(*args)
        if response_code is not None:
            self.response_code = response_code
