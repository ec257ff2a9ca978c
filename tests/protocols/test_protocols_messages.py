"""Typed messages: round trips, the response codes of refusals, and the echo rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import iso8583, mac, messages, tlv
from protocols.iso8583 import FormatError
from protocols.messages import (
    AdviceResponse,
    EnrollmentRequest,
    EnrollmentResponse,
    Header,
    InquiryRequest,
    InquiryResponse,
    MessageError,
    NetworkRequest,
    NetworkResponse,
    PurchaseAdvice,
    ReversalAdvice,
    ReversalResponse,
    parse_request,
    parse_response,
    respond,
)
from tests.protocols.protocols_strategies import PRINTABLE, requests

KEY = bytes(range(16))
HEADER = Header("1123194000", "000123", "231000", "1123", "T0000001", "M00000000000001")


def wire(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields as the agent sees them: signed when the kind needs a MAC, then decoded."""
    fields = dict(fields)
    raw = iso8583.encode(fields) if fields["t"][:2] == "08" else mac.sign(fields, KEY)
    return iso8583.decode(raw)


REQUESTS: dict[str, messages.Request] = {
    "network": NetworkRequest(HEADER, "001"),
    "enroll": EnrollmentRequest(HEADER, "+989121234567", referrer="۰۹۳۵۱۲۳۴۵۶۷"),
    "inquiry": InquiryRequest(HEADER, 1_500_000, phone="09121234567", redeem=20_000),
    "inquiry_card": InquiryRequest(
        HEADER, 1_500_000, card="6037990000000006", otp="1234", pan="603799******1234"
    ),
    "advice": PurchaseAdvice(HEADER, 1_480_000, "123456789012", "AB12CD", "00", 1_500_000, "Q1"),
    "advice_declined": PurchaseAdvice(
        HEADER, 1_500_000, "123456789012", None, "05", 1_500_000, phone="09121234567"
    ),
    "reversal": ReversalAdvice(HEADER, 1_480_000, "123456789012", quote_id="Q1"),
    "reversal_bare": ReversalAdvice(HEADER, 1_480_000, "123456789012"),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_every_kind_round_trips_over_the_wire(name: str) -> None:
    request = REQUESTS[name]
    assert parse_request(wire(request.to_fields())) == request


def test_to_fields_shape() -> None:
    fields = REQUESTS["inquiry"].to_fields()
    assert fields == {
        "t": "0100",
        "3": "310000",
        "4": "000001500000",
        "7": "1123194000",
        "11": "000123",
        "12": "231000",
        "13": "1123",
        "41": "T0000001",
        "42": "M00000000000001",
        "48": "PN01109121234567RD00520000",
    }
    assert "64" not in fields
    assert REQUESTS["network"].to_fields()["70"] == "001"
    assert REQUESTS["advice"].to_fields()["39"] == "00"
    assert "38" not in REQUESTS["advice_declined"].to_fields()
    assert not REQUESTS["advice_declined"].approved


def test_kinds_match_the_mqtt_request_types() -> None:
    from protocols import mqtt

    kinds = {r.kind for r in REQUESTS.values()} - {"network"}
    # `release` is the agent's own request to the backend: no terminal message carries it
    assert kinds == set(mqtt.REQUEST_TYPES) - {"release"}


def test_header_at() -> None:
    header = Header.at(
        datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 6, 34, 5), 1_000_007, "T1", "M1"
    )
    assert header == Header("0102030405", "000007", "063405", "0102", "T1", "M1")


@settings(max_examples=150, deadline=None)
@given(requests())
def test_random_requests_round_trip(request: messages.Request) -> None:
    assert parse_request(wire(request.to_fields())) == request


def _fields(name: str, drop: tuple[str, ...] = (), **override: Any) -> dict[str, Any]:
    fields = wire(REQUESTS[name].to_fields())
    for key in drop:
        fields.pop(key, None)
    fields.update(override)
    return fields


def _tlv48(**items: str) -> str:
    return tlv.encode(items)


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        # 30: format errors and missing mandatory fields
        *(((_fields("inquiry", drop=(k,))), "30", k) for k in ("7", "11", "12", "13", "41", "42")),
        (_fields("network", **{"64": b"12345678"}), "30", "64"),
        (_fields("network", drop=("70",)), "30", "70"),
        (_fields("inquiry", drop=("t",)), "30", "t"),
        (_fields("inquiry", t="0200"), "30", "t"),
        (_fields("inquiry", t="0110"), "30", "t"),
        (_fields("inquiry", drop=("3",)), "30", "3"),
        (_fields("inquiry", **{"7": "1323194000"}), "30", "7"),
        (_fields("inquiry", **{"7": "0230194000"}), "30", "7"),
        (_fields("inquiry", **{"12": "246000"}), "30", "12"),
        (_fields("inquiry", **{"13": "0001"}), "30", "13"),
        (_fields("inquiry", **{"4": "15000"}), "30", "4"),
        (_fields("inquiry", **{"49": "840"}), "30", "49"),
        (_fields("inquiry", **{"99": "1"}), "30", "99"),
        (_fields("inquiry", drop=("48",)), "30", "48"),
        (_fields("inquiry", **{"48": _tlv48(RD="5")}), "30", "48"),
        (_fields("inquiry", **{"48": _tlv48(PN="0912", CN="6037990000000006")}), "30", "48"),
        (_fields("inquiry", **{"48": _tlv48(PN="0912", RD="12a")}), "30", "48"),
        (_fields("inquiry", **{"48": _tlv48(PN="0912", RD="")}), "30", "48"),
        (_fields("inquiry", **{"48": _tlv48(PN="")}), "30", "48"),
        (_fields("inquiry", **{"48": "PN0110912"}), "30", "48"),
        (_fields("enroll", **{"48": _tlv48(RF="09121234567")}), "30", "48"),
        (_fields("enroll", drop=("48",)), "30", "48"),
        (_fields("advice", drop=("37",)), "30", "37"),
        (_fields("advice", drop=("39",)), "30", "39"),
        (_fields("advice", **{"48": _tlv48(GA="100")}), "30", "48"),
        (_fields("advice", **{"48": _tlv48(GA="1x", QI="Q")}), "30", "48"),
        (_fields("advice", **{"48": _tlv48(GA="1", QI="Q" * 33)}), "30", "48"),
        (_fields("advice", **{"48": _tlv48(GA="1", QI="کد")}), "30", "48"),
        (_fields("reversal", drop=("37",)), "30", "37"),
        (_fields("reversal", **{"48": _tlv48(PN="1", CN="2")}), "30", "48"),
        # 63: a missing MAC is a security violation like a wrong one (3.4), checked first
        (_fields("inquiry", drop=("64",)), "63", "64"),
        (_fields("advice", drop=("64",)), "63", "64"),
        (_fields("reversal", drop=("64",)), "63", "64"),
        (_fields("enroll", drop=("64", "7", "48")), "63", "64"),
        # 12: unknown processing or network code
        (_fields("inquiry", **{"3": "300000"}), "12", "3"),
        (_fields("advice", **{"3": "310000"}), "12", "3"),
        (_fields("reversal", **{"3": "900000"}), "12", "3"),
        (_fields("network", **{"70": "999"}), "12", "70"),
        # 13: amount missing or zero where required
        (_fields("inquiry", drop=("4",)), "13", "4"),
        (_fields("inquiry", **{"4": "000000000000"}), "13", "4"),
        (_fields("advice", drop=("4",)), "13", "4"),
        (_fields("advice", **{"4": "000000000000"}), "13", "4"),
        (_fields("advice", **{"48": _tlv48(QI="Q1")}), "13", "48"),
        (_fields("advice", **{"48": _tlv48(GA="0", QI="Q1")}), "13", "48"),
        (_fields("reversal", drop=("4",)), "13", "4"),
    ],
)
def test_refusals_carry_the_response_code(fields: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(MessageError) as info:
        parse_request(fields)
    assert (info.value.response_code, info.value.field) == (code, field), info.value.reason


def test_unknown_tags_are_ignored_and_enrollment_ignores_amount() -> None:
    fields = _fields("enroll", **{"48": _tlv48(PN="09121234567", ZZ="x"), "4": "000000000000"})
    assert parse_request(fields) == EnrollmentRequest(HEADER, "09121234567")


def test_lower_case_unknown_tag_is_ignored_not_a_format_error() -> None:
    fields = _fields("enroll", **{"48": "xy003abcPN01109121234567"})
    assert parse_request(fields) == EnrollmentRequest(HEADER, "09121234567")


def test_declined_advice_with_nothing_charged_is_taken() -> None:
    """3.2: field 4 is what the bank charged (0 when it declined), and a declined advice
    is what releases the hold, so it must not be refused with 13."""
    fields = _fields("advice_declined", **{"4": "000000000000"})
    advice = parse_request(fields)
    assert isinstance(advice, PurchaseAdvice)
    assert (advice.amount, advice.approved, advice.gross) == (0, False, 1_500_000)


def test_reversal_of_a_declined_advice_is_taken() -> None:
    """3.7: a 0420 carries the original's field 4, which is 0 for a declined purchase; it
    has nothing to undo and must be answered 00, not refused with 13 (issue 10.4)."""
    fields = _fields("reversal", **{"4": "000000000000"})
    rev = parse_request(fields)
    assert isinstance(rev, ReversalAdvice) and rev.amount == 0


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    junk = (
        st.none()
        | st.integers()
        | st.binary(max_size=10)
        | st.text(max_size=20)
        | st.text(PRINTABLE, min_size=0, max_size=13)
        | st.lists(st.integers(), max_size=2)
    )
    keys = st.sampled_from([*iso8583.SPEC, "5", "99", "h", ""]) | st.integers(-2, 200)
    base = st.sampled_from(sorted(REQUESTS)).map(lambda n: wire(REQUESTS[n].to_fields()))

    @st.composite
    def mutated(draw: st.DrawFn) -> dict[str, Any]:
        fields = draw(base)
        for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3)):
            fields.pop(key, None)
        fields.update(draw(st.dictionaries(keys, junk, max_size=3)))
        if draw(st.booleans()) and "48" in fields:
            fields["48"] = draw(st.text(st.sampled_from("PNCQIRDGA0123456789"), max_size=30))
        return fields

    return mutated() | st.dictionaries(keys, junk, max_size=8)


@settings(max_examples=200, deadline=None)
@given(_mutations())
def test_any_dict_gives_a_request_or_a_message_error(fields: dict[Any, Any]) -> None:
    try:
        request = parse_request(fields)
    except MessageError as exc:
        assert exc.response_code in ("12", "13", "30", "63")
        assert not exc.reason.startswith("unreadable"), exc.reason  # no defect was masked
        return
    assert request.to_fields()["t"] == fields["t"]


@settings(max_examples=100, deadline=None)
@given(_mutations())
def test_any_dict_gives_a_response_or_a_message_error(fields: dict[Any, Any]) -> None:
    try:
        parse_response(fields)
    except MessageError as exc:
        assert not exc.reason.startswith("unreadable"), exc.reason


def test_non_mappings_are_refused() -> None:
    for junk in (None, [], "0100", b"0100"):
        with pytest.raises(MessageError):
            parse_request(junk)  # type: ignore[arg-type]
        with pytest.raises(MessageError):
            parse_response(junk)  # type: ignore[arg-type]


# --- respond and the terminal's side ------------------------------------------------
def test_respond_echoes_by_the_rules() -> None:
    request = _fields("advice", **{"2": "603799******1234", "49": "364"})
    out = respond(request, "00", {"EA": "1480", "CB": "5000"})
    assert out == {
        "t": "0230",
        "3": "000000",
        "4": "000001480000",
        "7": "1123194000",
        "11": "000123",
        "12": "231000",
        "13": "1123",
        "37": "123456789012",
        "38": "AB12CD",
        "39": "00",
        "41": "T0000001",
        "42": "M00000000000001",
        "48": "EA0041480CB0045000",
    }
    assert list(out) == sorted(out, key=list(iso8583.SPEC).index)
    network = respond(_fields("network"), "00", {"ST": "ON", "QD": "0"})
    assert network["t"] == "0810" and network["70"] == "001" and "3" not in network


def test_respond_to_a_malformed_request_echoes_only_valid_fields() -> None:
    out = respond({"t": "0100", "11": "12", "41": "T0000001", "48": "x"}, "30")
    assert out == {"t": "0110", "39": "30", "41": "T0000001"}
    assert respond({"t": "0420"}, "12") == {"t": "0430", "39": "12"}
    for bad in ({}, {"t": "01"}, {"t": "0110"}, {"t": 100}):
        with pytest.raises(MessageError):
            respond(bad, "30")
    with pytest.raises(FormatError):
        respond({"t": "0100"}, "3")
    with pytest.raises(ValueError):
        respond({"t": "0100"}, "00", {"MG": "x" * 65})


RESPONSES = {
    "network": (
        "network",
        NetworkResponse("00", "OF", 3, HEADER, "001"),
    ),
    "enroll": ("enroll", EnrollmentResponse("00", "M1234", True, 0, "خوش آمدید", "a\nb", HEADER)),
    "inquiry": (
        "inquiry",
        InquiryResponse(
            "00", False, "Q1", 1_500_000, 20_000, 1_480_000, 5_000, "نقره‌ای", "m", "r", HEADER
        ),
    ),
    "inquiry_otp": ("inquiry", InquiryResponse("00", True, display="کد", header=HEADER)),
    "inquiry_refused": ("inquiry", InquiryResponse("91", header=HEADER)),
    "advice": ("advice", AdviceResponse("00", 148, 5_148, "r", HEADER)),
    "reversal": ("reversal", ReversalResponse("00", HEADER)),
}


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_responses_round_trip(name: str) -> None:
    request_name, response = RESPONSES[name]
    fields = respond(_fields(request_name), response.code, messages.response_tlv(response))
    assert parse_response(wire(fields)) == response


def test_response_refusals() -> None:
    good = wire(respond(_fields("inquiry"), "00", {"QI": "Q1"}))
    for drop, field in (("39", "39"), ("64", "64"), ("3", "3")):
        bad = {k: v for k, v in good.items() if k != drop}
        with pytest.raises(MessageError) as info:
            parse_response(bad)
        assert info.value.field == field
    with pytest.raises(MessageError):
        parse_response({**good, "48": "OV0012"})
    with pytest.raises(MessageError):
        parse_response({**good, "t": "0100"})
    with pytest.raises(MessageError):
        parse_response({**good, "48": "CB003abc"})
    header_less = {k: v for k, v in good.items() if k != "7"}
    assert parse_response(header_less).header is None


_amounts = st.none() | st.integers(0, 10**12 - 1)
_texts = st.none() | st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 64)


@st.composite
def _responses(draw: st.DrawFn) -> tuple[str, messages.Response]:
    code = draw(st.sampled_from(["00", "12", "13", "14", "30", "51", "55", "63", "91", "96"]))
    kind = draw(st.sampled_from(["network", "enroll", "inquiry", "advice", "reversal"]))
    if kind == "network":
        status = draw(st.sampled_from([None, "ON", "OF"]))
        return kind, NetworkResponse(code, status, draw(_amounts), HEADER, "001")
    if kind == "enroll":
        return kind, EnrollmentResponse(
            code,
            draw(_texts),
            draw(st.none() | st.booleans()),
            draw(_amounts),
            draw(_texts),
            draw(_texts),
            HEADER,
        )
    if kind == "inquiry":
        return kind, InquiryResponse(
            code,
            draw(st.booleans()),
            draw(st.none() | st.text(PRINTABLE, min_size=1, max_size=32)),
            *(draw(_amounts) for _ in range(4)),
            draw(_texts),
            draw(_texts),
            draw(_texts),
            HEADER,
        )
    if kind == "advice":
        return kind, AdviceResponse(code, draw(_amounts), draw(_amounts), draw(_texts), HEADER)
    return kind, ReversalResponse(code, HEADER)


@settings(max_examples=150, deadline=None)
@given(_responses())
def test_random_responses_round_trip(case: tuple[str, messages.Response]) -> None:
    request_name, response = case
    fields = respond(_fields(request_name), response.code, messages.response_tlv(response))
    assert parse_response(wire(fields)) == response
