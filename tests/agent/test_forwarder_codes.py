"""The forwarder's final codes come from the one enum: the backend's codes but 96."""

from __future__ import annotations

from agent.forwarder import FINAL_CODES
from protocols.response_codes import ResponseCode


def test_final_codes_are_the_backends_answers_except_malfunction() -> None:
    assert {"00", "12", "13", "14", "30", "51", "55"} == FINAL_CODES
    assert ResponseCode.MALFUNCTION not in FINAL_CODES  # 96: try the same entry again
    assert ResponseCode.BACKEND_UNREACHABLE not in FINAL_CODES  # never a backend answer
