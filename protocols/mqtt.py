"""MQTT topics and JSON payloads between the agent and the backend (docs/mqtt.md).

Pure code: builds and checks payloads, never touches a socket. Both sides import this
module, so the schema is spelled once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from protocols.numbers import is_count, is_int
from protocols.response_codes import CodedError, ResponseCode

VERSION = 1
PREFIX = "loyalty/v1"
SHARE_GROUP = "loyalty-backend"
REQUEST_TYPES = ("enroll", "inquiry", "advice", "reversal", "release")
#: The codes a backend answers with (63 and 91 are the agent's own).
RESPONSE_CODES = tuple(
    c for c in ResponseCode
    if c not in (ResponseCode.SECURITY_VIOLATION, ResponseCode.BACKEND_UNREACHABLE)
)
_TID = re.compile(r"[A-Za-z0-9_-]{8}")
_ID = re.compile(r"[\x21-\x7e]{1,64}")
_MID = re.compile(r"[\x20-\x7e]{15}")


class SchemaError(CodedError):
    """A payload or topic that does not follow docs/mqtt.md; answered with code 30."""

    response_code = ResponseCode.FORMAT_ERROR


def check_terminal_id(tid: str) -> str:
    """Terminal ids go into topic names, so only topic-safe characters are allowed."""
    if not isinstance(tid, str) or not _TID.fullmatch(tid):
        raise SchemaError(f"terminal id {tid!r} must be 8 letters, digits, '-' or '_'")
    return tid


def check_merchant_id(mid: str) -> str:
    """Field 42: 15 printable ASCII characters."""
    if not isinstance(mid, str) or not _MID.fullmatch(mid):
        raise SchemaError(f"merchant id {mid!r} must be 15 printable ASCII characters")
    return mid


def request_topic(tid: str) -> str:
    return f"{PREFIX}/terminal/{check_terminal_id(tid)}/req"


def response_topic(tid: str) -> str:
    return f"{PREFIX}/terminal/{check_terminal_id(tid)}/resp"


def terminal_status_topic(tid: str) -> str:
    return f"{PREFIX}/terminal/{check_terminal_id(tid)}/status"


def backend_status_topic(instance: str) -> str:
    if not instance or any(c in instance for c in "/+#\0"):
        raise SchemaError(f"backend instance name {instance!r} is not topic-safe")
    return f"{PREFIX}/backend/{instance}/status"


BACKEND_STATUS_FILTER = f"{PREFIX}/backend/+/status"
REQUEST_FILTER = f"{PREFIX}/terminal/+/req"
SHARED_REQUEST_FILTER = f"$share/{SHARE_GROUP}/{REQUEST_FILTER}"


def terminal_of_topic(topic: str) -> str:
    """The terminal id in a `loyalty/v1/terminal/{tid}/...` topic."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[2] != "terminal":
        raise SchemaError(f"not a terminal topic: {topic!r}")
    return check_terminal_id(parts[3])


def idempotency_key(tid: str, mti: str, stan: str, transmitted_at: str) -> str:
    """The identity PROTOCOL.md 3.6 gives a repeated request: MTI, 41, 11 and 7."""
    return f"{tid}:{mti}:{stan}:{transmitted_at}"


def release_key(inquiry_key: str) -> str:
    """The idempotency key of the release of the inquiry under `inquiry_key`."""
    tid, mti, rest = inquiry_key.split(":", 2)
    if mti != "0100":
        raise SchemaError(f"not an inquiry key: {inquiry_key!r}")
    return f"{tid}:release:{rest}"


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """An ISO 8601 UTC instant as written by utc_now_iso (a trailing Z is accepted)."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise SchemaError(f"not an ISO 8601 time: {value!r}") from exc
    if dt.tzinfo is None:
        raise SchemaError(f"time without a zone: {value!r}")
    return dt.astimezone(UTC)


# --- body schemas -------------------------------------------------------------------
# name -> (python types allowed, required). None is allowed only where listed.
_INT = (int,)
_STR = (str,)
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))

REQUEST_BODIES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "enroll": {"phone": (_STR, True), "referrer": (_OPT_STR, False)},
    "inquiry": {
        "phone": (_OPT_STR, False),
        "card": (_OPT_STR, False),
        "gross": (_INT, True),
        "redeem": (_OPT_INT, False),
        "otp": (_OPT_STR, False),
    },
    "advice": {
        "stan": (_STR, True),
        "transmitted_at": (_STR, True),
        "local_date": (_STR, True),
        "local_time": (_STR, True),
        "occurred_at": (_STR, True),
        "amount": (_INT, True),
        "gross": (_INT, True),
        "rrn": (_STR, True),
        "auth_code": (_OPT_STR, False),
        "bank_code": (_STR, True),
        "quote_id": (_OPT_STR, False),
        "phone": (_OPT_STR, False),
        "card": (_OPT_STR, False),
    },
    "reversal": {
        "stan": (_STR, True),
        "transmitted_at": (_STR, True),
        "occurred_at": (_STR, True),
        "amount": (_INT, True),
        "rrn": (_STR, True),
        "original_key": (_STR, True),
        "quote_id": (_OPT_STR, False),
        "phone": (_OPT_STR, False),
        "card": (_OPT_STR, False),
    },
    # The agent gives up an inquiry whose answer the terminal never used (91 sent instead,
    # or the 0110 never delivered): the backend ends its hold, or makes sure it never holds.
    "release": {
        "inquiry_key": (_STR, True),
        "quote_id": (_OPT_STR, False),
        "reason": (_STR, True),
    },
}

RESPONSE_BODIES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "enroll": {
        "member_code": (_STR, True),
        "new": ((bool,), True),
        "balance": (_INT, True),
        "display": (_STR, False),
        "receipt": (_STR, False),
    },
    "inquiry": {
        "otp_required": ((bool,), True),
        "quote_id": (_OPT_STR, False),
        "gross": (_OPT_INT, False),
        "discount": (_OPT_INT, False),
        "net": (_OPT_INT, False),
        "balance": (_OPT_INT, False),
        "tier": (_OPT_STR, False),
        "display": (_STR, False),
        "receipt": (_STR, False),
    },
    "advice": {
        "earned": (_INT, True),
        "balance": (_INT, True),
        "receipt": (_STR, False),
    },
    "reversal": {
        "balance": (_INT, True),
        "restored": (_INT, False),
        "taken_back": (_INT, False),
    },
    "release": {"released": (_INT, True)},
}


_ABSENT = object()


def _check_body(kind: str, body: Any, schema: dict[str, tuple[tuple[type, ...], bool]]) -> dict:
    if not isinstance(body, dict):
        raise SchemaError(f"{kind}: body must be an object")
    if not body.keys() <= schema.keys():
        for name in body:
            if name not in schema:
                raise SchemaError(f"{kind}: unknown body field {name!r}")
    for name, (types, required) in schema.items():
        value = body.get(name, _ABSENT)
        if value is _ABSENT:
            if required:
                raise SchemaError(f"{kind}: body field {name!r} is missing")
            continue
        # the plain types first (a dict lookup and a type test: every message passes here)
        if type(value) in types:
            if type(value) is int and value < 0:
                raise SchemaError(f"{kind}: body field {name!r} must not be negative")
            continue
        # bool is an int subclass: never accept it for an amount.
        if isinstance(value, bool) and bool not in types:
            raise SchemaError(f"{kind}: body field {name!r} has the wrong type")
        if not isinstance(value, types):
            raise SchemaError(f"{kind}: body field {name!r} has the wrong type")
        if is_int(value) and not is_count(value):
            raise SchemaError(f"{kind}: body field {name!r} must not be negative")
    return body


def _identified(kind: str, body: Mapping[str, Any], need: bool) -> None:
    ids = [n for n in ("quote_id", "phone", "card") if body.get(n)]
    if kind == "inquiry":
        ids = [n for n in ("phone", "card") if body.get(n)]
        if len(ids) != 1:
            raise SchemaError("inquiry: exactly one of phone and card is required")
    elif need and not ids:
        raise SchemaError(f"{kind}: one of quote_id, phone and card is required")


@dataclass(frozen=True, slots=True)
class Request:
    type: str
    id: str
    key: str
    terminal_id: str
    merchant_id: str
    body: dict[str, Any]
    sent_at: str = field(default_factory=utc_now_iso)

    def to_json(self) -> bytes:
        return encode_request(self)


@dataclass(frozen=True, slots=True)
class Response:
    type: str
    id: str
    key: str
    code: str
    body: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == ResponseCode.APPROVED

    def to_json(self) -> bytes:
        return encode_response(self)


#: one decoder and one encoder for every message (json.dumps with options builds an
#: encoder per call)
_DECODER = json.JSONDecoder()
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _text(payload: bytes) -> str:
    """UTF-8 as sent; anything else (a BOM, UTF-16) decoded as json.loads decodes bytes."""
    if payload[:1] == b"{":
        try:
            return payload.decode()
        except UnicodeDecodeError:
            pass
    return payload.decode(json.detect_encoding(payload), "surrogatepass")


def _load(payload: bytes | str) -> dict:
    try:
        doc = _DECODER.decode(payload if isinstance(payload, str) else _text(payload))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SchemaError(f"payload is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SchemaError("payload must be a JSON object")
    v = doc.get("v")
    if type(v) is not int or v != VERSION:  # JSON true == 1 in Python: not a version
        raise SchemaError(f"unsupported schema version {v!r}")
    if doc.get("type") not in REQUEST_TYPES:
        raise SchemaError(f"unknown message type {doc.get('type')!r}")
    for name in ("id", "key"):
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise SchemaError(f"{name!r} is missing")
    if not _ID.fullmatch(doc["id"]):
        raise SchemaError("'id' must be 1..64 printable ASCII characters")
    return doc


def _dump(doc: dict) -> bytes:
    return _ENCODER.encode(doc).encode()


def check_request(req: Request) -> Request:
    if req.type not in REQUEST_TYPES:
        raise SchemaError(f"unknown message type {req.type!r}")
    check_terminal_id(req.terminal_id)
    if not isinstance(req.id, str) or not isinstance(req.key, str):
        raise SchemaError("request id and idempotency key must be strings")
    if not req.key or not req.id or not _ID.fullmatch(req.id):
        raise SchemaError("request id and idempotency key are required")
    _check_body(req.type, req.body, REQUEST_BODIES[req.type])
    _identified(req.type, req.body, need=req.type == "advice")
    return req


def encode_request(req: Request) -> bytes:
    check_request(req)
    return _dump(
        {
            "v": VERSION,
            "type": req.type,
            "id": req.id,
            "key": req.key,
            "terminal_id": req.terminal_id,
            "merchant_id": req.merchant_id,
            "sent_at": req.sent_at,
            "body": req.body,
        }
    )


def decode_request(payload: bytes | str) -> Request:
    doc = _load(payload)
    for name in ("terminal_id", "merchant_id", "sent_at"):
        if not isinstance(doc.get(name), str):
            raise SchemaError(f"{name!r} is missing")
    return check_request(
        Request(
            type=doc["type"],
            id=doc["id"],
            key=doc["key"],
            terminal_id=doc["terminal_id"],
            merchant_id=doc["merchant_id"],
            body=doc.get("body"),  # type: ignore[arg-type]
            sent_at=doc["sent_at"],
        )
    )


def check_response(resp: Response) -> Response:
    if resp.type not in REQUEST_TYPES:
        raise SchemaError(f"unknown message type {resp.type!r}")
    if resp.code not in RESPONSE_CODES:
        raise SchemaError(
            f"response code {resp.code!r} is not one of {', '.join(RESPONSE_CODES)}"
        )
    if not isinstance(resp.message, str):
        raise SchemaError("'message' must be a string")
    if resp.code == ResponseCode.APPROVED:
        _check_body(resp.type, resp.body, RESPONSE_BODIES[resp.type])
    elif resp.body:
        raise SchemaError("a refused request carries no body")
    return resp


def encode_response(resp: Response) -> bytes:
    check_response(resp)
    return _dump(
        {
            "v": VERSION,
            "type": resp.type,
            "id": resp.id,
            "key": resp.key,
            "code": resp.code,
            "message": resp.message,
            "body": resp.body,
        }
    )


def decode_response(payload: bytes | str) -> Response:
    doc = _load(payload)
    body = doc.get("body") or {}
    return check_response(
        Response(
            type=doc["type"],
            id=doc["id"],
            key=doc["key"],
            code=doc.get("code"),  # type: ignore[arg-type]
            body=body,
            message=doc.get("message", ""),
        )
    )


def refusal(req: Request, code: str, message: str) -> Response:
    """The response to a request the backend will not carry out."""
    return Response(type=req.type, id=req.id, key=req.key, code=code, message=message)


def encode_status(online: bool) -> bytes:
    return _dump({"v": VERSION, "status": "online" if online else "offline", "at": utc_now_iso()})


def decode_status(payload: bytes | str) -> bool:
    """True for `online`; a retained empty payload (a cleared topic) reads as offline."""
    if not payload:
        return False
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SchemaError(f"status payload is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("status") not in ("online", "offline"):
        raise SchemaError("status must be 'online' or 'offline'")
    return doc["status"] == "online"
