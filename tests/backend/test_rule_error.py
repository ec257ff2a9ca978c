"""backend.program.RuleError: a CodedError; `.code` stays as a read-only alias for now."""

from __future__ import annotations

import pytest

from backend.program import Program, RuleError
from protocols.response_codes import CodedError, ResponseCode


def test_rule_error_carries_a_response_code() -> None:
    with pytest.raises(RuleError) as info:
        Program().discount(100_000, available=10, requested=20)
    err = info.value
    assert isinstance(err, CodedError)
    assert err.response_code is ResponseCode.NOT_ENOUGH_CREDIT
    assert err.code is err.response_code  # the alias backend/handlers.py still reads
    with pytest.raises(AttributeError):
        err.code = ResponseCode.APPROVED  # type: ignore[misc]
    assert RuleError("12", "unknown quote").response_code is ResponseCode.INVALID_TRANSACTION
