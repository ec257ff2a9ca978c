"""The handler as pure logic: request bytes in, response bytes out, a fake backend port."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.forwarder import Backoff, Forwarder
from protocols import iso8583, mac, messages, mqtt, tlv
from protocols.messages import Header

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
TID = "T0000001"
MID = "M00000000000001"
PHONE = "09121234567"


class FakeBackend:
    """A BackendPort whose answers the test chooses; records what it was asked."""

    def __init__(self) -> None:
        self.up = True
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.answer: dict[str, Any] | None = None
        self.code = "00"

    def online(self) -> bool:
        return self.up

    def request(self, type: str, key: str, body: dict[str, Any], deadline: float):
        self.calls.append((type, key, body))
        if self.answer is None:
            return None
        return mqtt.Response(type, "id", key, self.code, self.answer if self.code == "00" else {})


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def header(stan: int = 1, at: str = "1123194000") -> Header:
    return Header(at, f"{stan:06d}", "231000", "1123", TID, MID)


def signed(req: Any) -> bytes:
    return mac.sign(req.to_fields(), KEY)


def answer(raw: bytes | None) -> dict[str, Any]:
    assert raw is not None
    fields = iso8583.decode(raw)
    if fields["t"][:2] != "08":
        assert mac.verify(raw, KEY), "responses to 01xx/02xx/04xx carry a valid MAC"
    return fields


def items(fields: dict[str, Any]) -> dict[str, str]:
    return tlv.decode(fields["48"]) if "48" in fields else {}


def advice(stan: int = 5, rrn: str = "123456789012", at: str = "1123194005"):
    return messages.PurchaseAdvice(header(stan, at), 1_480_000, rrn, "A1B2C3", "00", 1_500_000,
                                   phone=PHONE)


def test_network_management_reports_status_and_queue(parts) -> None:
    handler, _, backend = parts
    for code in ("001", "301", "002"):
        out = answer(handler.handle(iso8583.encode(messages.NetworkRequest(header(), code)
                                                   .to_fields())))
        assert out["t"] == "0810" and out["39"] == "00" and out["70"] == code
        assert items(out) == {"ST": "ON", "QD": "0"}
    backend.up = False
    handler.handle(signed(advice()))
    out = answer(handler.handle(iso8583.encode(messages.NetworkRequest(header(), "301")
                                               .to_fields())))
    assert items(out) == {"ST": "OF", "QD": "1"}


def test_wrong_or_missing_mac_is_63_with_no_effect(parts) -> None:
    handler, journal, backend = parts
    raw = bytearray(signed(advice()))
    raw[-1] ^= 1
    out = answer(handler.handle(bytes(raw)))
    assert out["t"] == "0230" and out["39"] == "63"
    fields = advice().to_fields()
    unsigned = iso8583.encode(fields)
    assert answer(handler.handle(unsigned))["39"] == "63"
    assert journal.queued() == 0 and len(journal) == 0 and backend.calls == []


def test_malformed_message_is_30_when_the_mti_is_readable(parts) -> None:
    handler, journal, _ = parts
    raw = signed(advice())
    assert answer(handler.handle(raw[:30]))["39"] == "30"
    assert handler.handle(b"\x01\x02") is None
    assert len(journal) == 0


def test_inquiry_is_asked_of_the_backend_and_mapped_to_48(parts) -> None:
    handler, _, backend = parts
    backend.answer = {"otp_required": False, "quote_id": "Q1", "gross": 1_500_000,
                      "discount": 20_000, "net": 1_480_000, "balance": 5_000, "tier": "silver",
                      "display": "سلام", "receipt": "x" * 600}
    req = messages.InquiryRequest(header(2), 1_500_000, phone="+989121234567", redeem=20_000)
    out = answer(handler.handle(signed(req)))
    assert out["t"] == "0110" and out["39"] == "00" and out["4"] == "000001500000"
    got = items(out)
    assert got["QI"] == "Q1" and got["NA"] == "1480000" and got["MG"] == "سلام"
    assert len(got["RL"].encode()) == 400
    kind, key, body = backend.calls[0]
    assert kind == "inquiry" and key == f"{TID}:0100:000002:1123194000"
    assert body == {"gross": 1_500_000, "redeem": 20_000, "otp": None, "phone": PHONE}
    # The same request again: the same bytes, and the backend is not asked twice.
    assert handler.handle(signed(req)) == handler.handle(signed(req))
    assert len(backend.calls) == 1


def test_one_time_code_in_persian_digits_reaches_the_backend_as_ascii(parts) -> None:
    handler, _, backend = parts
    backend.answer = {"otp_required": False, "quote_id": "Q2", "gross": 900_000,
                      "discount": 0, "net": 900_000, "balance": 0, "tier": "bronze"}
    req = messages.InquiryRequest(header(7), 900_000, phone=PHONE, otp="۱۲۳٤٥٦")
    assert answer(handler.handle(signed(req)))["39"] == "00"
    assert backend.calls[0][2]["otp"] == "123456"


def test_backend_codes_pass_through_and_silence_is_91(parts) -> None:
    handler, _, backend = parts
    backend.answer, backend.code = {}, "51"
    req = messages.InquiryRequest(header(3), 100, card="6037990000000006")
    assert answer(handler.handle(signed(req)))["39"] == "51"
    backend.answer = None
    req = messages.InquiryRequest(header(4), 100, phone=PHONE)
    assert answer(handler.handle(signed(req)))["39"] == "91"
    backend.up = False
    req = messages.EnrollmentRequest(header(5), PHONE)
    assert answer(handler.handle(signed(req)))["39"] == "91"
    assert len(backend.calls) == 2  # an offline backend is not even asked


def test_invalid_phone_or_card_is_14_without_the_backend(parts) -> None:
    handler, journal, backend = parts
    for req in (
        messages.EnrollmentRequest(header(6), "12345"),
        messages.InquiryRequest(header(7), 100, card="6037990000000007"),
        messages.PurchaseAdvice(header(8), 1, "000000000001", None, "00", 1, phone="0912"),
    ):
        assert answer(handler.handle(signed(req)))["39"] == "14"
    assert backend.calls == [] and len(journal) == 0


def test_enrollment_answer(parts) -> None:
    handler, _, backend = parts
    backend.answer = {"member_code": "M42", "new": True, "balance": 0, "display": "خوش آمدید"}
    out = answer(handler.handle(signed(messages.EnrollmentRequest(header(9), "۰۹۱۲۱۲۳۴۵۶۷"))))
    assert out["39"] == "00" and items(out) == {"MC": "M42", "NW": "1", "CB": "0",
                                                "MG": "خوش آمدید"}
    assert backend.calls[0][2] == {"phone": PHONE, "referrer": None}


def test_advice_is_journaled_and_answered_offline_then_replayed(parts) -> None:
    handler, journal, backend = parts
    backend.up = False
    first = handler.handle(signed(advice()))
    out = answer(first)
    assert out["t"] == "0230" and out["39"] == "00" and out["37"] == "123456789012"
    assert journal.queued() == 1
    pending = journal.head()
    assert pending is not None and pending.type == "advice"
    assert pending.key == f"{TID}:0220:000005:1123194005"
    mqtt.check_request(mqtt.Request("advice", "x", pending.key, TID, MID, pending.body))
    assert handler.handle(signed(advice())) == first
    assert journal.queued() == 1 and backend.calls == []


def test_reversal_matches_its_original_and_queues_after_it(parts) -> None:
    handler, journal, backend = parts
    backend.up = False
    handler.handle(signed(advice(stan=11, rrn="000000000011")))
    unknown = messages.ReversalAdvice(header(99, "1123194100"), 1_480_000, "000000000011")
    assert answer(handler.handle(signed(unknown)))["39"] == "12"
    rev = messages.ReversalAdvice(header(11, "1123194200"), 1_480_000, "000000000011",
                                  phone=PHONE)
    out = answer(handler.handle(signed(rev)))
    assert out["t"] == "0430" and out["39"] == "00"
    kinds = [(p.type, p.body["stan"]) for p in journal.pending()]
    assert kinds == [("advice", "000011"), ("reversal", "000011")]
    assert journal.pending()[1].body["original_key"] == f"{TID}:0220:000011:1123194005"
    again = messages.ReversalAdvice(header(11, "1123194300"), 1_480_000, "000000000011")
    assert answer(handler.handle(signed(again)))["39"] == "00"
    assert journal.queued() == 2  # a second reversal of the same original: no effect


def test_advice_carries_earned_credit_when_the_backend_answers_quickly(parts) -> None:
    handler, journal, backend = parts
    backend.answer = {"earned": 44_400, "balance": 49_400, "receipt": "امتیاز"}
    fwd = Forwarder(journal, backend, backoff=Backoff(0.05, 0.1))
    handler.forwarder = fwd
    handler._monotonic = __import__("time").monotonic
    fwd.start()
    try:
        first = handler.handle(signed(advice(stan=12)))
    finally:
        fwd.stop()
    out = answer(first)
    assert out["39"] == "00" and items(out) == {"EA": "44400", "CB": "49400", "RL": "امتیاز"}
    assert journal.queued() == 0 and len(backend.calls) == 1
    assert handler.handle(signed(advice(stan=12))) == first
    assert len(backend.calls) == 1


def test_logs_hold_no_phone_card_or_key(parts, caplog: pytest.LogCaptureFixture) -> None:
    handler, _, backend = parts
    caplog.set_level(logging.DEBUG)
    backend.answer = None
    handler.handle(signed(messages.InquiryRequest(header(20), 100, phone=PHONE)))
    handler.handle(signed(messages.InquiryRequest(header(21), 100, card="6037990000000006")))
    handler.handle(signed(messages.EnrollmentRequest(header(22), "0912123456")))
    backend.up = False
    handler.handle(signed(advice(stan=23)))
    text = caplog.text
    assert caplog.records
    assert PHONE not in text and "6037990000000006" not in text
    assert KEY.hex() not in text and KEY.hex().upper() not in text
    assert "0912***" in text or "0912*****67" in text


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), prefix=st.sampled_from([b"", b"0100", b"0220", b"0800"]))
def test_any_bytes_get_an_answer_or_none_and_never_raise(parts, data: bytes, prefix: bytes) -> None:
    handler, journal, _ = parts
    before = len(journal)
    out = handler.handle(prefix + data)
    if out is not None:
        fields = iso8583.decode(out)
        assert fields["39"] in ("30", "63", "12", "13", "14")
    assert len(journal) == before
