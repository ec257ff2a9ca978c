"""Typed messages of PROTOCOL.md 3.2, converted to and from iso8583 field dicts.

`parse_request` is the agent's gate: whatever dict it gets, it returns a typed request
or raises `MessageError` carrying the response code to answer with (30, 12 or 13), so no
other exception can escape into the link thread. `parse_response` is the terminal's side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from protocols import iso8583
from protocols import tlv as tlv_codec
from protocols.iso8583 import FormatError
from protocols.numbers import is_count
from protocols.response_codes import CodedError, ResponseCode

# MTIs and processing codes of PROTOCOL.md 3.2.
NETWORK: Final = "0800"
AUTHORIZATION: Final = "0100"
ADVICE: Final = "0220"
REVERSAL: Final = "0420"
ENROLL_CODE: Final = "900000"
INQUIRY_CODE: Final = "310000"
ADVICE_CODE: Final = "000000"
SIGN_ON: Final = "001"
SIGN_OFF: Final = "002"
ECHO: Final = "301"
#: PROTOCOL.md 3.6: the terminal waits this long for an 0110; the agent answers within
#: AGENT_INQUIRY_BUDGET, counted from the ACKed request (3.7).
TERMINAL_INQUIRY_WAIT: Final = 3.0
AGENT_INQUIRY_BUDGET: Final = 2.5
NETWORK_CODES: Final = (SIGN_ON, SIGN_OFF, ECHO)
CURRENCY: Final = "364"
HEADER_FIELDS: Final = ("7", "11", "12", "13", "41", "42")
ECHO_FIELDS: Final = ("3", "4", "7", "11", "12", "13", "37", "38", "41", "42", "70")
MAX_AMOUNT: Final = 10**12 - 1
MAX_QUOTE_ID: Final = 32


class MessageError(CodedError):
    """A request the agent cannot carry out; `response_code` is what 39 should say."""

    def __init__(self, response_code: ResponseCode, field: str, reason: str) -> None:
        super().__init__(f"{response_code} (field {field}): {reason}",
                         response_code=ResponseCode(response_code))
        self.field = field
        self.reason = reason


def _format(field: str, reason: str) -> MessageError:
    return MessageError(ResponseCode.FORMAT_ERROR, field, reason)


@dataclass(frozen=True, slots=True)
class Header:
    """Fields 7, 11, 12, 13, 41, 42, carried by every request and echoed by its response."""

    transmitted_at: str
    stan: str
    local_time: str
    local_date: str
    terminal_id: str
    merchant_id: str

    @classmethod
    def at(
        cls, utc: datetime, local: datetime, stan: int | str, terminal_id: str, merchant_id: str
    ) -> Header:
        """A header for a message sent at `utc` (field 7) and `local` (fields 12, 13)."""
        stan_text = f"{int(stan) % 1_000_000:06d}" if isinstance(stan, int) else stan
        return cls(
            utc.strftime("%m%d%H%M%S"),
            stan_text,
            local.strftime("%H%M%S"),
            local.strftime("%m%d"),
            terminal_id,
            merchant_id,
        )

    def to_fields(self) -> dict[str, str]:
        return {
            "7": self.transmitted_at,
            "11": self.stan,
            "12": self.local_time,
            "13": self.local_date,
            "41": self.terminal_id,
            "42": self.merchant_id,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Header:
        for key in HEADER_FIELDS:
            if key not in fields:
                raise _format(key, f"mandatory field {key} is missing")
            _field(fields, key)
        _check_datetime("7", fields["7"][:4], fields["7"][4:])
        _check_datetime("12", None, fields["12"])
        _check_datetime("13", fields["13"], None)
        return cls(
            fields["7"], fields["11"], fields["12"], fields["13"], fields["41"], fields["42"]
        )


_DAYS: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _check_datetime(key: str, mmdd: str | None, hhmmss: str | None) -> None:
    if mmdd is not None:
        month, day = int(mmdd[:2]), int(mmdd[2:])
        if not 1 <= month <= 12 or not 1 <= day <= _DAYS[month - 1]:
            raise _format(key, f"{mmdd!r} is not a date MMDD")
    if hhmmss is not None:
        h, m, s = int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:])
        if h > 23 or m > 59 or s > 59:
            raise _format(key, f"{hhmmss!r} is not a time hhmmss")


def _field(fields: Mapping[str, Any], key: str) -> Any:
    """The value of a present field, checked against the codec's table."""
    value = fields[key]
    try:
        iso8583.check_field(key, value)
    except FormatError as exc:
        raise _format(exc.field, exc.reason) from None
    return value


def _amount_text(value: int, key: str = "4") -> str:
    if not is_count(value) or value > MAX_AMOUNT:
        raise ValueError(f"field {key}: amount {value!r} must be an int in 0..{MAX_AMOUNT}")
    return f"{value:012d}"


def _with_tlv(fields: dict[str, Any], items: Mapping[str, str | None]) -> dict[str, Any]:
    present = {k: v for k, v in items.items() if v is not None}
    if present:
        fields["48"] = tlv_codec.encode(present)
    return fields


# --- requests -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NetworkRequest:
    header: Header
    code: str

    kind = "network"
    mti = NETWORK
    processing_code = None

    def to_fields(self) -> dict[str, Any]:
        return {"t": self.mti, **self.header.to_fields(), "70": self.code}


@dataclass(frozen=True, slots=True)
class EnrollmentRequest:
    header: Header
    phone: str
    referrer: str | None = None

    kind = "enroll"
    mti = AUTHORIZATION
    processing_code = ENROLL_CODE

    def to_fields(self) -> dict[str, Any]:
        fields = {"t": self.mti, "3": self.processing_code, **self.header.to_fields()}
        return _with_tlv(fields, {"PN": self.phone, "RF": self.referrer})


@dataclass(frozen=True, slots=True)
class InquiryRequest:
    header: Header
    amount: int
    phone: str | None = None
    card: str | None = None
    redeem: int | None = None
    otp: str | None = None
    pan: str | None = None

    kind = "inquiry"
    mti = AUTHORIZATION
    processing_code = INQUIRY_CODE

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"t": self.mti}
        if self.pan is not None:
            fields["2"] = self.pan
        fields.update({"3": self.processing_code, "4": _amount_text(self.amount)})
        fields.update(self.header.to_fields())
        redeem = None if self.redeem is None else str(self.redeem)
        return _with_tlv(fields, {"PN": self.phone, "CN": self.card, "RD": redeem, "OT": self.otp})


@dataclass(frozen=True, slots=True)
class PurchaseAdvice:
    header: Header
    amount: int
    rrn: str
    auth_code: str | None
    bank_code: str
    gross: int
    quote_id: str | None = None
    phone: str | None = None
    card: str | None = None
    pan: str | None = None

    kind = "advice"
    mti = ADVICE
    processing_code = ADVICE_CODE

    @property
    def approved(self) -> bool:
        """Whether the bank approved the card payment (a declined one releases the hold)."""
        return self.bank_code == ResponseCode.APPROVED

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"t": self.mti}
        if self.pan is not None:
            fields["2"] = self.pan
        fields.update({"3": self.processing_code, "4": _amount_text(self.amount)})
        fields.update(self.header.to_fields())
        fields["37"] = self.rrn
        if self.auth_code is not None:
            fields["38"] = self.auth_code
        fields["39"] = self.bank_code
        return _with_tlv(
            fields,
            {
                "GA": str(self.gross),
                "QI": self.quote_id,
                "PN": self.phone,
                "CN": self.card,
            },
        )


@dataclass(frozen=True, slots=True)
class ReversalAdvice:
    """`header.stan` is the original advice's 11; `header.transmitted_at` this message's 7."""

    header: Header
    amount: int
    rrn: str
    quote_id: str | None = None
    phone: str | None = None
    card: str | None = None

    kind = "reversal"
    mti = REVERSAL
    processing_code = ADVICE_CODE

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "t": self.mti,
            "3": self.processing_code,
            "4": _amount_text(self.amount),
            **self.header.to_fields(),
            "37": self.rrn,
        }
        return _with_tlv(fields, {"QI": self.quote_id, "PN": self.phone, "CN": self.card})


Request = NetworkRequest | EnrollmentRequest | InquiryRequest | PurchaseAdvice | ReversalAdvice


def _tlv(fields: Mapping[str, Any], required: bool) -> dict[str, str]:
    if "48" not in fields:
        if required:
            raise _format("48", "field 48 is missing")
        return {}
    value = _field(fields, "48")
    try:
        return tlv_codec.decode(value)
    except FormatError as exc:
        raise _format("48", exc.reason) from None


def _amount(fields: Mapping[str, Any], *, zero_ok: bool = False) -> int:
    """Field 4 of a request that needs an amount: missing, or zero unless `zero_ok`, is 13."""
    if "4" not in fields:
        raise MessageError(ResponseCode.INVALID_AMOUNT, "4", "the amount is missing")
    value = int(_field(fields, "4"))
    if value == 0 and not zero_ok:
        raise MessageError(ResponseCode.INVALID_AMOUNT, "4", "the amount is zero")
    return value


def _digits(
    items: Mapping[str, str], tag: str, *, zero_code: ResponseCode | None = None
) -> int | None:
    value = items.get(tag)
    if value is None:
        return None
    if not value or not value.isascii() or not value.isdigit() or len(value) > 12:
        raise _format("48", f"{tag} must be 1..12 decimal digits, got {value!r}")
    number = int(value)
    if zero_code is not None and number == 0:
        raise MessageError(zero_code, "48", f"{tag} is zero")
    return number


def _text(items: Mapping[str, str], tag: str) -> str | None:
    value = items.get(tag)
    if value is not None and not value:
        raise _format("48", f"{tag} is empty")
    return value


def _quote_id(items: Mapping[str, str]) -> str | None:
    value = items.get("QI")
    if value is not None and not (
        1 <= len(value) <= MAX_QUOTE_ID and value.isascii() and value.isprintable()
    ):
        raise _format("48", "QI must be 1..32 printable ASCII characters")
    return value


def _identity(items: Mapping[str, str]) -> tuple[str | None, str | None]:
    phone, card = _text(items, "PN"), _text(items, "CN")
    if phone is not None and card is not None:
        raise _format("48", "PN and CN are mutually exclusive")
    return phone, card


def _processing_code(fields: Mapping[str, Any], allowed: tuple[str, ...]) -> str:
    if "3" not in fields:
        raise _format("3", "the processing code is missing")
    code = _field(fields, "3")
    if code not in allowed:
        raise MessageError(ResponseCode.INVALID_TRANSACTION, "3", f"unknown processing code {code}")
    return code


def _guarded(parse: Callable[[Mapping[str, Any]], Any], fields: Any, what: str) -> Any:
    """Run a parser so that only `MessageError` escapes: a defect in it must still
    become an answer, not a crash of the link thread."""
    try:
        return parse(fields)
    except MessageError:
        raise
    except Exception as exc:
        raise _format("t", f"unreadable {what}: {exc!r}") from None


def _checked_mti(fields: Any, what: str) -> str:
    """The MTI of a field dict whose every field is valid for the codec's table."""
    if not isinstance(fields, Mapping):
        raise _format("t", f"a {what} must be a mapping of fields")
    for key in fields:
        if key in ("p", "1"):
            continue
        if not isinstance(key, str):
            raise _format(str(key), "field keys must be strings")
        _field(fields, key)
    if "t" not in fields:
        raise _format("t", "the MTI is missing")
    return fields["t"]


def parse_request(fields: Mapping[str, Any]) -> Request:
    """The typed request of a decoded field dict, or `MessageError` with 30, 12, 13 or 63
    (field 64 missing from a 01xx/02xx/04xx message, PROTOCOL.md 3.4)."""
    return _guarded(_parse_request, fields, "request")


def _parse_request(fields: Mapping[str, Any]) -> Request:
    mti = _checked_mti(fields, "request")
    if mti not in (NETWORK, AUTHORIZATION, ADVICE, REVERSAL):
        raise _format("t", f"{mti} is not a request of PROTOCOL.md 3.2")
    if mti != NETWORK and "64" not in fields:
        # 3.4: a missing MAC is answered 63 like a wrong one, before anything else.
        raise MessageError(ResponseCode.SECURITY_VIOLATION, "64", "the MAC is missing")
    header = Header.from_fields(fields)
    if "49" in fields and fields["49"] != CURRENCY:
        raise _format("49", f"currency must be {CURRENCY}")
    if mti == NETWORK:
        if "64" in fields:
            raise _format("64", "08xx messages carry no MAC")
        if "70" not in fields:
            raise _format("70", "the network management code is missing")
        code = fields["70"]
        if code not in NETWORK_CODES:
            raise MessageError(
                ResponseCode.INVALID_TRANSACTION, "70", f"unknown network code {code}"
            )
        return NetworkRequest(header, code)
    pan = fields.get("2")
    if mti == AUTHORIZATION:
        code = _processing_code(fields, (ENROLL_CODE, INQUIRY_CODE))
        if code == ENROLL_CODE:
            items = _tlv(fields, required=True)
            phone = _text(items, "PN")
            if phone is None:
                raise _format("48", "PN is missing")
            return EnrollmentRequest(header, phone, _text(items, "RF"))
        amount = _amount(fields)
        items = _tlv(fields, required=True)
        phone, card = _identity(items)
        if phone is None and card is None:
            raise _format("48", "one of PN and CN is required")
        return InquiryRequest(
            header,
            amount,
            phone=phone,
            card=card,
            redeem=_digits(items, "RD"),
            otp=_text(items, "OT"),
            pan=pan,
        )
    _processing_code(fields, (ADVICE_CODE,))
    if mti == ADVICE and "39" not in fields:
        raise _format("39", "the bank's response code is missing")
    # 3.2: field 4 of an advice is what the bank charged, which is 0 when it declined;
    # that advice must still be taken, since it is what releases the hold. A reversal
    # carries the original's field 4, so the reversal of a declined advice carries 0
    # (3.7: it has nothing to undo and is answered 00).
    amount = _amount(fields, zero_ok=mti == REVERSAL or fields["39"] != ResponseCode.APPROVED)
    if "37" not in fields:
        raise _format("37", "the RRN is missing")
    if mti == ADVICE:
        items = _tlv(fields, required=True)
        gross = _digits(items, "GA", zero_code=ResponseCode.INVALID_AMOUNT)
        if gross is None:
            raise MessageError(ResponseCode.INVALID_AMOUNT, "48", "GA is missing")
        quote_id = _quote_id(items)
        phone, card = _identity(items)
        if quote_id is None and phone is None and card is None:
            raise _format("48", "one of QI, PN and CN is required")
        return PurchaseAdvice(
            header,
            amount,
            fields["37"],
            fields.get("38"),
            fields["39"],
            gross,
            quote_id=quote_id,
            phone=phone,
            card=card,
            pan=pan,
        )
    items = _tlv(fields, required=False)
    phone, card = _identity(items)
    return ReversalAdvice(
        header, amount, fields["37"], quote_id=_quote_id(items), phone=phone, card=card
    )


def respond(
    request_fields: Mapping[str, Any], code: str, tlv: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The response field dict by the echo rules of 3.2 (no field 64: `mac.sign` adds it).

    Fields of the request that are themselves malformed are not echoed, so a format
    error can always be answered.
    """
    mti = request_fields.get("t") if isinstance(request_fields, Mapping) else None
    if not (isinstance(mti, str) and len(mti) == 4 and mti.isascii() and mti.isdigit()):
        raise _format("t", "cannot answer a message without a valid MTI")
    if mti[2] not in "02":
        raise _format("t", f"{mti} is not a request")
    iso8583.check_field("39", code)
    out: dict[str, Any] = {"t": f"{mti[:2]}{int(mti[2]) + 1}{mti[3]}"}
    for key in ECHO_FIELDS:
        if key in request_fields:
            value = request_fields[key]
            try:
                iso8583.check_field(key, value)
            except FormatError:
                continue
            out[key] = value
    out["39"] = code
    if tlv:
        out["48"] = tlv_codec.encode(tlv)
    return dict(sorted(out.items(), key=lambda kv: _ORDER[kv[0]]))


_ORDER: Final = {key: i for i, key in enumerate(iso8583.SPEC)}


# --- responses (the terminal's side) ------------------------------------------------
@dataclass(frozen=True, slots=True)
class NetworkResponse:
    code: str
    status: str | None = None
    queued: int | None = None
    header: Header | None = None
    network_code: str | None = None

    mti = "0810"


@dataclass(frozen=True, slots=True)
class EnrollmentResponse:
    code: str
    member_code: str | None = None
    new: bool | None = None
    balance: int | None = None
    display: str | None = None
    receipt: str | None = None
    header: Header | None = None

    mti = "0110"


@dataclass(frozen=True, slots=True)
class InquiryResponse:
    code: str
    otp_required: bool = False
    quote_id: str | None = None
    gross: int | None = None
    discount: int | None = None
    net: int | None = None
    balance: int | None = None
    tier: str | None = None
    display: str | None = None
    receipt: str | None = None
    header: Header | None = None

    mti = "0110"


@dataclass(frozen=True, slots=True)
class AdviceResponse:
    code: str
    earned: int | None = None
    balance: int | None = None
    receipt: str | None = None
    header: Header | None = None

    mti = "0230"


@dataclass(frozen=True, slots=True)
class ReversalResponse:
    code: str
    header: Header | None = None

    mti = "0430"


Response = (
    NetworkResponse | EnrollmentResponse | InquiryResponse | AdviceResponse | ReversalResponse
)


def _flag(items: Mapping[str, str], tag: str) -> bool | None:
    value = items.get(tag)
    if value is None:
        return None
    if value not in ("0", "1"):
        raise _format("48", f"{tag} must be 0 or 1")
    return value == "1"


def parse_response(fields: Mapping[str, Any]) -> Response:
    """The typed response of a decoded field dict, or `MessageError` (code 30 or 12)."""
    return _guarded(_parse_response, fields, "response")


def _parse_response(fields: Mapping[str, Any]) -> Response:
    mti = _checked_mti(fields, "response")
    if "39" not in fields:
        raise _format("39", "the response code is missing")
    code = fields["39"]
    header = Header.from_fields(fields) if all(k in fields for k in HEADER_FIELDS) else None
    items = _tlv(fields, required=False)
    if mti == "0810":
        status = items.get("ST")
        if status is not None and status not in ("ON", "OF"):
            raise _format("48", "ST must be ON or OF")
        return NetworkResponse(code, status, _digits(items, "QD"), header, fields.get("70"))
    if mti not in ("0110", "0230", "0430"):
        raise _format("t", f"{mti} is not a response of PROTOCOL.md 3.2")
    if "64" not in fields:
        raise _format("64", "the MAC is missing")
    if mti == "0110":
        pcode = _processing_code(fields, (ENROLL_CODE, INQUIRY_CODE))
        if pcode == ENROLL_CODE:
            return EnrollmentResponse(
                code,
                member_code=items.get("MC"),
                new=_flag(items, "NW"),
                balance=_digits(items, "CB"),
                display=items.get("MG"),
                receipt=items.get("RL"),
                header=header,
            )
        return InquiryResponse(
            code,
            otp_required=bool(_flag(items, "OV")),
            quote_id=_quote_id(items),
            gross=_digits(items, "GA"),
            discount=_digits(items, "DA"),
            net=_digits(items, "NA"),
            balance=_digits(items, "CB"),
            tier=items.get("TR"),
            display=items.get("MG"),
            receipt=items.get("RL"),
            header=header,
        )
    if mti == "0230":
        return AdviceResponse(
            code,
            earned=_digits(items, "EA"),
            balance=_digits(items, "CB"),
            receipt=items.get("RL"),
            header=header,
        )
    return ReversalResponse(code, header)


def response_tlv(response: Response) -> dict[str, str]:
    """Field 48 items for a typed response (the agent's side of `parse_response`);
    None is left out, MG and RL are fitted to their limits."""
    items: dict[str, str | None] = {}
    if isinstance(response, NetworkResponse):
        q = None if response.queued is None else str(response.queued)
        items = {"ST": response.status, "QD": q}
    elif isinstance(response, EnrollmentResponse):
        new = None if response.new is None else ("1" if response.new else "0")
        items = {
            "MC": response.member_code,
            "NW": new,
            "CB": _opt(response.balance),
            "MG": _fitted(response.display, "MG"),
            "RL": _fitted(response.receipt, "RL"),
        }
    elif isinstance(response, InquiryResponse):
        items = {
            "OV": "1" if response.otp_required else None,
            "QI": response.quote_id,
            "GA": _opt(response.gross),
            "DA": _opt(response.discount),
            "NA": _opt(response.net),
            "CB": _opt(response.balance),
            "TR": response.tier,
            "MG": _fitted(response.display, "MG"),
            "RL": _fitted(response.receipt, "RL"),
        }
    elif isinstance(response, AdviceResponse):
        items = {
            "EA": _opt(response.earned),
            "CB": _opt(response.balance),
            "RL": _fitted(response.receipt, "RL"),
        }
    return {k: v for k, v in items.items() if v is not None}


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)


def _fitted(text: str | None, tag: str) -> str | None:
    """MG and RL cut to their byte limits on a character boundary (PROTOCOL.md 3.3)."""
    return None if text is None else tlv_codec.fit(text, tlv_codec.LIMITS[tag])
