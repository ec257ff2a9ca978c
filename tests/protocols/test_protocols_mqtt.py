"""MQTT payloads of docs/mqtt.md: round trips, refusals and topics."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import mqtt
from protocols.mqtt import Request, Response, SchemaError

TID = "T0000001"
KEY = mqtt.idempotency_key(TID, "0100", "000123", "1123194000")
BODIES = {
    "enroll": {"phone": "09121234567", "referrer": None},
    "inquiry": {"phone": None, "card": "6037990000000006", "gross": 1_500_000, "redeem": 20_000},
    "advice": {
        "stan": "000124",
        "transmitted_at": "1123194005",
        "local_date": "1123",
        "local_time": "231005",
        "occurred_at": "2026-11-23T19:40:05Z",
        "amount": 1_480_000,
        "gross": 1_500_000,
        "rrn": "123456789012",
        "auth_code": "A1B2C3",
        "bank_code": "00",
        "quote_id": "Q1",
    },
    "reversal": {
        "stan": "000124",
        "transmitted_at": "1123194500",
        "occurred_at": "2026-11-23T19:45:00Z",
        "amount": 1_480_000,
        "rrn": "123456789012",
        "original_key": "T0000001:0220:000124:1123194005",
        "card": "6037990000000006",
    },
    "release": {"inquiry_key": KEY, "quote_id": "Q1", "reason": "unanswered"},
}
RESPONSE_BODIES = {
    "enroll": {"member_code": "M1", "new": True, "balance": 0, "display": "خوش آمدید"},
    "inquiry": {"otp_required": True, "display": "کد ارسال شد"},
    "advice": {"earned": 44_400, "balance": 49_400, "receipt": "a\nb"},
    "reversal": {"balance": 5_000, "restored": 20_000, "taken_back": 44_400},
    "release": {"released": 20_000},
}


def request(kind: str, **body: object) -> Request:
    return Request(kind, "req-1", KEY, TID, "M00000000000001", {**BODIES[kind], **body})


@pytest.mark.parametrize("kind", mqtt.REQUEST_TYPES)
def test_requests_round_trip(kind: str) -> None:
    req = request(kind)
    payload = req.to_json()
    doc = json.loads(payload)
    assert doc["v"] == 1 and doc["type"] == kind and doc["key"] == KEY
    assert mqtt.decode_request(payload) == req
    assert mqtt.decode_request(payload.decode()) == req


@pytest.mark.parametrize("kind", mqtt.REQUEST_TYPES)
def test_responses_round_trip(kind: str) -> None:
    resp = Response(kind, "req-1", KEY, "00", RESPONSE_BODIES[kind])
    assert mqtt.decode_response(resp.to_json()) == resp
    assert resp.ok
    refused = mqtt.refusal(request(kind), "14", "unknown member")
    back = mqtt.decode_response(refused.to_json())
    assert back == refused and not back.ok and back.body == {}


def test_persian_text_is_sent_as_utf8() -> None:
    resp = Response("enroll", "r", KEY, "00", RESPONSE_BODIES["enroll"])
    assert "خوش آمدید".encode() in resp.to_json()


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("enroll", {"phone": None}),
        ("enroll", {"colour": "red"}),
        ("inquiry", {"phone": "09121234567"}),  # both phone and card
        ("inquiry", {"card": None}),  # neither
        ("inquiry", {"gross": "1500000"}),
        ("inquiry", {"gross": True}),  # bool is not an amount
        ("inquiry", {"gross": 1.5}),
        ("inquiry", {"gross": -1}),
        ("inquiry", {"redeem": -5}),
        ("advice", {"quote_id": None}),  # no identification
        ("advice", {"rrn": None}),
        ("reversal", {"card": None}),  # fine: identification optional ...
    ],
)
def test_request_bodies_refused(kind: str, body: dict) -> None:
    req = request(kind, **body)
    if kind == "reversal":
        assert mqtt.decode_request(req.to_json()) == req  # ... for a reversal
        return
    with pytest.raises(SchemaError):
        req.to_json()


def test_release_key_is_the_inquiry_identity_under_its_own_type() -> None:
    assert mqtt.release_key(KEY) == "T0000001:release:000123:1123194000"
    with pytest.raises(SchemaError):
        mqtt.release_key("T0000001:0220:000124:1123194005")


def test_missing_required_body_field() -> None:
    body = dict(BODIES["advice"])
    del body["amount"]
    with pytest.raises(SchemaError):
        Request("advice", "r", KEY, TID, "M", body).to_json()


def _doc(**override: object) -> bytes:
    doc = json.loads(request("enroll").to_json())
    doc.update(override)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        b"[" * 100_000,  # nested too deep for the parser
        _doc(v=2),
        _doc(v=...),
        _doc(type="purchase"),
        _doc(type=["enroll"]),
        _doc(id=""),
        _doc(id="x" * 65),
        _doc(id="has space"),
        _doc(id=7),
        _doc(key=""),
        _doc(key=...),
        _doc(terminal_id="T1"),
        _doc(terminal_id="T000/001"),
        _doc(terminal_id=...),
        _doc(merchant_id=5),
        _doc(sent_at=...),
        _doc(body=...),
        _doc(body=[]),
    ],
    ids=lambda payload: f"{len(payload)}-bytes",  # payloads hold the time: not stable ids
)
def test_request_payloads_refused(payload: bytes) -> None:
    with pytest.raises(SchemaError):
        mqtt.decode_request(payload)


@pytest.mark.parametrize(
    "resp",
    [
        Response("enroll", "r", KEY, "63", {}),  # not a backend code
        Response("enroll", "r", KEY, "14", {"balance": 1}),  # refusal with a body
        Response("enroll", "r", KEY, "00", {"member_code": "M1"}),  # incomplete
        Response("advice", "r", KEY, "00", {"earned": 1, "balance": 1, "extra": 1}),
        Response("refund", "r", KEY, "00", {}),
        Response("enroll", "r", KEY, "14", {}, message=5),  # type: ignore[arg-type]
    ],
)
def test_responses_refused(resp: Response) -> None:
    with pytest.raises(SchemaError):
        resp.to_json()


def test_request_with_non_text_id_is_refused() -> None:
    with pytest.raises(SchemaError):
        Request("enroll", 5, KEY, TID, "M", dict(BODIES["enroll"])).to_json()  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _is_json_object(payload: bytes) -> bool:
    try:
        return isinstance(json.loads(payload), dict)
    except (ValueError, RecursionError):
        return False


# Garbage for certain, whatever the decoders do: bytes that are no JSON object at all, and
# JSON objects whose keys and texts are at most 5 characters (every message type, and the
# field "status", is longer: none of them can follow docs/mqtt.md).
garbage = (
    (st.binary(max_size=60) | st.text(max_size=60).map(str.encode)).filter(
        lambda p: p != b"" and not _is_json_object(p)
    )
    | st.dictionaries(st.text(max_size=5), json_values, max_size=6).map(
        lambda d: json.dumps(d).encode()
    )
)


@settings(max_examples=300, deadline=None)
@given(garbage)
def test_garbage_is_refused_with_a_schema_error(payload: bytes) -> None:
    for decode in (mqtt.decode_request, mqtt.decode_response, mqtt.decode_status):
        with pytest.raises(SchemaError):
            decode(payload)


def test_an_empty_status_is_offline_not_garbage() -> None:
    assert mqtt.decode_status(b"") is False  # a retained status cleared from the broker


def _inquiry_body_conforms(body: object) -> bool:
    """docs/mqtt.md's inquiry body, written here: gross, and exactly one of phone and card."""
    if not isinstance(body, dict) or not set(body) <= {"phone", "card", "gross", "redeem", "otp"}:
        return False

    def count(v: object) -> bool:
        return type(v) is int and v >= 0

    return (
        "gross" in body and count(body["gross"])
        and ("redeem" not in body or body["redeem"] is None or count(body["redeem"]))
        and all(body.get(n) is None or isinstance(body[n], str) for n in ("phone", "card", "otp"))
        and sum(bool(body.get(n)) for n in ("phone", "card")) == 1
    )  # fmt: skip


def _request_conforms(name: str, value: object) -> bool:
    """Whether the inquiry request with `name` set to `value` still follows docs/mqtt.md."""
    checks = {
        "v": lambda v: type(v) is int and v == 1,
        "type": lambda v: v == "inquiry",  # the body stays an inquiry's
        "id": lambda v: isinstance(v, str) and re.fullmatch(r"[\x21-\x7e]{1,64}", v),
        "key": lambda v: isinstance(v, str) and v != "",
        "terminal_id": lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_-]{8}", v),
        "body": _inquiry_body_conforms,
    }
    return bool(checks[name](value)) if name in checks else True  # others are ignored


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["v", "type", "id", "key", "terminal_id", "body", "code", "message"]),
    json_values,
)
def test_any_field_value_is_taken_or_refused_as_the_schema_says(name: str, value: object) -> None:
    doc = json.loads(request("inquiry").to_json())
    doc[name] = value
    payload = json.dumps(doc)
    if _request_conforms(name, value):
        req = mqtt.decode_request(payload)
        assert req.to_json() == mqtt.decode_request(req.to_json()).to_json()
    else:
        with pytest.raises(SchemaError):
            mqtt.decode_request(payload)
    with pytest.raises(SchemaError):  # a request is never a response: it has no code
        mqtt.decode_response(payload)


def test_version_must_be_the_number_1_not_true() -> None:
    doc = json.loads(request("inquiry").to_json())
    doc["v"] = True
    with pytest.raises(SchemaError):
        mqtt.decode_request(json.dumps(doc))


def test_status() -> None:
    assert mqtt.decode_status(mqtt.encode_status(True)) is True
    assert mqtt.decode_status(mqtt.encode_status(False)) is False
    assert mqtt.decode_status(b"") is False  # a cleared retained topic
    for bad in (b"{}", b'{"status": "up"}', b"[1]", b"x"):
        with pytest.raises(SchemaError):
            mqtt.decode_status(bad)


def test_topics() -> None:
    assert mqtt.request_topic(TID) == "loyalty/v1/terminal/T0000001/req"
    assert mqtt.response_topic(TID) == "loyalty/v1/terminal/T0000001/resp"
    assert mqtt.terminal_status_topic(TID) == "loyalty/v1/terminal/T0000001/status"
    assert mqtt.backend_status_topic("b1") == "loyalty/v1/backend/b1/status"
    assert mqtt.terminal_of_topic(mqtt.request_topic(TID)) == TID
    assert mqtt.SHARED_REQUEST_FILTER == "$share/loyalty-backend/loyalty/v1/terminal/+/req"
    for bad in ("T+000001", "T#000001", "T000001", "T00000001", "T000/001", ""):
        with pytest.raises(SchemaError):
            mqtt.request_topic(bad)
    for bad in ("a/b", "+", "#", ""):
        with pytest.raises(SchemaError):
            mqtt.backend_status_topic(bad)
    for bad in ("loyalty/v1/terminal/T0000001", "loyalty/v2/terminal/T0000001/req", "x/y/z/w/v"):
        with pytest.raises(SchemaError):
            mqtt.terminal_of_topic(bad)


def test_idempotency_key_and_times() -> None:
    assert KEY == "T0000001:0100:000123:1123194000"
    assert mqtt.parse_iso("2026-11-23T19:40:05.123Z") == datetime(
        2026, 11, 23, 19, 40, 5, 123000, tzinfo=UTC
    )
    assert mqtt.parse_iso(mqtt.utc_now_iso()).tzinfo == UTC
    for bad in ("2026-11-23T19:40:05", "yesterday", 5):
        with pytest.raises(SchemaError):
            mqtt.parse_iso(bad)  # type: ignore[arg-type]
