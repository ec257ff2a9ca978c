"""messages.response_tlv, the one builder of field 48 (the agent uses it for every answer)."""

from __future__ import annotations

from protocols import messages, tlv


def test_texts_are_fitted_to_their_byte_limits() -> None:
    long_display = "اعتبار شما " * 20  # far beyond MG's 64 bytes
    long_receipt = "خط رسید\n" * 80  # beyond RL's 400 bytes
    items = messages.response_tlv(messages.InquiryResponse(
        "00", quote_id="q1", gross=1000, discount=0, net=1000, balance=5,
        display=long_display, receipt=long_receipt))
    assert len(items["MG"].encode()) <= tlv.LIMITS["MG"]
    assert len(items["RL"].encode()) <= tlv.LIMITS["RL"]
    assert long_display.startswith(items["MG"]) and long_receipt.startswith(items["RL"])
    assert tlv.decode(tlv.encode(items))["MG"] == items["MG"]  # encodable as it is
    for response in (
        messages.EnrollmentResponse("00", member_code="1", new=True, balance=0,
                                    display=long_display, receipt=long_receipt),
        messages.AdviceResponse("00", earned=1, balance=2, receipt=long_receipt),
    ):
        tlv.encode(messages.response_tlv(response))  # would raise when a text is too long


def test_absent_values_are_left_out_and_flags_are_digits() -> None:
    assert messages.response_tlv(messages.InquiryResponse("00", otp_required=True,
                                                          display="کد")) == {"OV": "1",
                                                                               "MG": "کد"}
    assert messages.response_tlv(messages.EnrollmentResponse(
        "00", member_code="104729", new=False, balance=0)) == {"MC": "104729", "NW": "0",
                                                               "CB": "0"}
    assert messages.response_tlv(messages.NetworkResponse("00", "OF", 2)) == {"ST": "OF",
                                                                             "QD": "2"}
