"""ISO 8583 (1987) codec for the terminal link, PROTOCOL.md 3.1.

The field table is written once, as `construct` definitions (`SPEC`), and everything else
is derived from it: a reference parser built from those constructs (`decode_reference`)
and a precomputed per-field plan that `encode`/`decode` walk. Measured by
benchmarks/codec.py: construct's `Struct.parse` runs at about half pyiso8583's speed and
its `.compile()` at about twice (without the character-class checks), while the plan runs
at 3-5 times pyiso8583's; so the hot path walks the plan, and the tests check that plan
and construct table agree on every message, valid or damaged.

Keys and values follow pyiso8583: `"t"` (MTI), `"p"` and `"1"` (bitmaps), `"2"` ...
`"70"`; values are `str` except `"p"`, `"1"` and `"64"`, which are `bytes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import construct as cs

from protocols.response_codes import CodedError, ResponseCode

Charset = Literal["n", "an", "ans", "b", "utf8"]
Kind = Literal["fixed", "llvar", "lllvar"]


class FormatError(CodedError):
    """A message or field that does not follow PROTOCOL.md 3.1; answered with 39 = 30."""

    response_code = ResponseCode.FORMAT_ERROR

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field {field}: {reason}")
        self.field = field
        self.reason = reason


class _AsciiLength(cs.Adapter):
    """An LLVAR/LLLVAR length prefix: ASCII decimal digits."""

    def __init__(self, digits: int) -> None:
        super().__init__(cs.Bytes(digits))
        self.digits = digits

    def _decode(self, obj: bytes, context: Any, path: str) -> int:
        if not obj.isdigit():
            raise cs.ValidationError(f"length prefix {obj!r} is not ASCII digits", path=path)
        return int(obj)

    def _encode(self, obj: int, context: Any, path: str) -> bytes:
        if not 0 <= obj < 10**self.digits:
            raise cs.ValidationError(f"length {obj} does not fit {self.digits} digits", path=path)
        return b"%0*d" % (self.digits, obj)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One row of the field table: `length` is the fixed length or the maximum."""

    key: str
    name: str
    kind: Kind
    length: int
    charset: Charset
    con: cs.Construct

    @property
    def bit(self) -> int:
        """The bitmap position (1..128); 0 for the MTI and the primary bitmap."""
        return int(self.key) if self.key.isdigit() else 0


def _row(key: str, name: str, kind: Kind, length: int, charset: Charset) -> FieldSpec:
    encoding = "utf8" if charset == "utf8" else "ascii"
    if kind == "fixed":
        raw: cs.Construct = cs.Bytes(length)
    else:
        raw = cs.Prefixed(_AsciiLength(2 if kind == "llvar" else 3), cs.GreedyBytes)
    con = raw if charset == "b" else cs.StringEncoded(raw, encoding)
    return FieldSpec(key, name, kind, length, charset, con)


#: The field table of PROTOCOL.md 3.1, in message order.
SPEC: Final[dict[str, FieldSpec]] = {
    r.key: r
    for r in (
        _row("t", "MTI", "fixed", 4, "n"),
        _row("p", "primary bitmap", "fixed", 8, "b"),
        _row("1", "secondary bitmap", "fixed", 8, "b"),
        _row("2", "PAN, masked", "llvar", 19, "ans"),
        _row("3", "processing code", "fixed", 6, "n"),
        _row("4", "amount, rials", "fixed", 12, "n"),
        _row("7", "transmission date-time MMDDhhmmss", "fixed", 10, "n"),
        _row("11", "STAN", "fixed", 6, "n"),
        _row("12", "local time hhmmss", "fixed", 6, "n"),
        _row("13", "local date MMDD", "fixed", 4, "n"),
        _row("37", "RRN", "fixed", 12, "an"),
        _row("38", "authorisation code", "fixed", 6, "an"),
        _row("39", "response code", "fixed", 2, "an"),
        _row("41", "terminal id", "fixed", 8, "ans"),
        _row("42", "merchant id", "fixed", 15, "ans"),
        _row("48", "loyalty data, TLV", "lllvar", 999, "utf8"),
        _row("49", "currency code", "fixed", 3, "n"),
        _row("64", "MAC", "fixed", 8, "b"),
        _row("70", "network management code", "fixed", 3, "n"),
    )
}

#: Data fields (bit 2 and up) in ascending order.
DATA_FIELDS: Final = tuple(s for s in SPEC.values() if s.bit >= 2)

_PRINTABLE: Final = bytes(range(0x20, 0x7F))


def _check_class(key: str, raw: bytes, charset: Charset) -> None:
    """Character-class check on the wire bytes of an ASCII field."""
    if charset == "n":
        ok = raw.isdigit()
    elif charset == "an":
        ok = raw.isalnum()
    else:  # ans
        ok = not raw.translate(None, _PRINTABLE)
    if not ok:
        what = {"n": "digits", "an": "letters and digits", "ans": "printable ASCII"}[charset]
        raise FormatError(key, f"must be {what} only, got {raw!r}")


# --- the precomputed plan -----------------------------------------------------------
# A 128-bit integer holds both bitmaps: field k is bit (128 - k).
def _mask(bit: int) -> int:
    return 1 << (128 - bit)


_KNOWN_MASK: Final = sum(_mask(s.bit) for s in DATA_FIELDS) | _mask(1)
_SECONDARY_MASK: Final = (1 << 64) - 1
_PLAN: Final = tuple(
    (
        _mask(s.bit),
        s.key,
        {"fixed": 0, "llvar": 2, "lllvar": 3}[s.kind],
        s.length,
        s.charset,
    )
    for s in DATA_FIELDS
)
_BY_KEY: Final = {p[1]: p for p in _PLAN}


def encode(fields: Mapping[str, Any]) -> bytes:
    """The wire form of a field dict; bitmaps are computed (any "p"/"1" given is ignored)."""
    return _encode(fields)[0]


def _encode(fields: Mapping[str, Any]) -> tuple[bytes, int]:
    """The message and the offset of field 64 in it (-1 when absent), for the MAC."""
    if not isinstance(fields, Mapping):
        raise FormatError("t", "a message must be a mapping of fields")
    for key in fields:
        if key not in _BY_KEY and key not in ("t", "p", "1"):
            raise FormatError(str(key), "not a field of PROTOCOL.md 3.1")
    mti = fields.get("t")
    if mti is None:
        raise FormatError("t", "the MTI is missing")
    parts: list[bytes] = [_ascii("t", mti, 4, "n")]
    bitmap = 0
    size = 0
    offset64 = -1
    body: list[bytes] = []
    for mask, key, prefix, length, charset in _PLAN:
        if key not in fields:
            continue
        value = fields[key]
        bitmap |= mask
        if charset == "b":
            if not isinstance(value, bytes | bytearray) or len(value) != length:
                raise FormatError(key, f"must be {length} bytes")
            raw = bytes(value)
            if key == "64":
                offset64 = size
        elif prefix == 0:
            raw = _ascii(key, value, length, charset)
        else:
            if not isinstance(value, str):
                raise FormatError(key, "must be a string")
            try:
                raw = value.encode("ascii" if charset != "utf8" else "utf-8")
            except UnicodeEncodeError:
                raise FormatError(
                    key, "must be ASCII" if charset != "utf8" else "not UTF-8"
                ) from None
            if len(raw) > length:
                raise FormatError(key, f"{len(raw)} bytes, at most {length} allowed")
            if charset != "utf8" and raw:
                _check_class(key, raw, charset)
            raw = b"%0*d" % (prefix, len(raw)) + raw
        body.append(raw)
        size += len(raw)
    if bitmap & _SECONDARY_MASK:
        bitmap |= _mask(1)
        parts.append(bitmap.to_bytes(16, "big"))
    else:
        parts.append((bitmap >> 64).to_bytes(8, "big"))
    head = parts[0] + parts[1]
    if offset64 >= 0:
        offset64 += len(head)
    return head + b"".join(body), offset64


def _ascii(key: str, value: Any, length: int, charset: Charset) -> bytes:
    if not isinstance(value, str):
        raise FormatError(key, "must be a string")
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise FormatError(key, "must be ASCII") from None
    if len(raw) != length:
        raise FormatError(key, f"must be exactly {length} characters, got {len(raw)}")
    _check_class(key, raw, charset)
    return raw


def decode(data: bytes) -> dict[str, Any]:
    """The field dict of a message; any deviation from 3.1 is a `FormatError`."""
    return _decode(data)[0]


def _decode(data: bytes) -> tuple[dict[str, Any], int]:
    """The fields and the offset of field 64 (-1 when absent), for the MAC."""
    out: dict[str, Any] = {}
    return out, _decode_into(data, out)


def decode_partial(data: bytes) -> tuple[dict[str, Any], FormatError | None]:
    """Every field that could be read, and the first error (None if there is none).

    A malformed request is still answered (39 = 30) echoing what could be read of it
    (PROTOCOL.md 3.7), so the terminal can match the answer: a field whose extent is known
    (fixed length, or a sound length prefix) but whose content is wrong is left out and
    reading goes on past it; only an error that hides where the next field starts stops.
    """
    out: dict[str, Any] = {}
    bad: list[FormatError] = []
    try:
        _decode_into(data, out, bad)
    except FormatError as exc:
        bad.append(exc)
    return out, (bad[0] if bad else None)


def _decode_into(
    data: bytes, out: dict[str, Any], bad: list[FormatError] | None = None
) -> int:
    """Decode into `out`; with `bad`, content errors are collected there, not raised."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError("t", "a message must be bytes")
    data = bytes(data)
    end = len(data)
    if end < 4:
        raise FormatError("t", "the MTI is missing")
    mti = data[:4]
    if not mti.isdigit():
        raise FormatError("t", f"must be digits only, got {mti!r}")
    out["t"] = mti.decode("ascii")
    if end < 12:
        raise FormatError("p", "the primary bitmap is missing or short")
    primary = data[4:12]
    out["p"] = primary
    bitmap = int.from_bytes(primary, "big") << 64
    pos = 12
    if primary[0] & 0x80:
        if end < 20:
            raise FormatError("1", "the secondary bitmap is missing or short")
        secondary = data[12:20]
        out["1"] = secondary
        bitmap |= int.from_bytes(secondary, "big")
        pos = 20
    unknown = bitmap & ~_KNOWN_MASK
    offset64 = -1
    for mask, key, prefix, length, charset in _PLAN:
        if unknown and unknown.bit_length() > mask.bit_length():
            # A set bit below this field's is not in the table: stop where it would start.
            bit = 129 - unknown.bit_length()
            raise FormatError(str(bit), "not a field of PROTOCOL.md 3.1")
        if not bitmap & mask:
            continue
        if prefix:
            digits = data[pos : pos + prefix]
            if len(digits) < prefix:
                raise FormatError(key, "the length prefix runs past the message")
            if not digits.isdigit():
                raise FormatError(key, f"length prefix {digits!r} is not ASCII digits")
            size = int(digits)
            pos += prefix
            if size > length:
                too_long = FormatError(key, f"{size} bytes, at most {length} allowed")
                if bad is None or pos + size > end:
                    raise too_long
                bad.append(too_long)  # its extent is known: read on past it
                pos += size
                continue
        else:
            size = length
        stop = pos + size
        if stop > end:
            raise FormatError(key, "the field runs past the message")
        raw = data[pos:stop]
        if charset == "b":
            if key == "64":
                offset64 = pos
            out[key] = raw
        elif charset == "utf8":
            try:
                out[key] = raw.decode("utf-8")
            except UnicodeDecodeError:
                if bad is None:
                    raise FormatError(key, "not valid UTF-8") from None
                bad.append(FormatError(key, "not valid UTF-8"))
        else:
            try:
                if raw:
                    _check_class(key, raw, charset)
                out[key] = raw.decode("ascii")
            except FormatError as exc:
                if bad is None:
                    raise
                bad.append(exc)
        pos = stop
    if unknown:
        raise FormatError(str(129 - unknown.bit_length()), "not a field of PROTOCOL.md 3.1")
    if pos != end:
        # The bitmap announces fewer fields than the message holds.
        raise FormatError("p", f"{end - pos} trailing bytes after the last field")
    return offset64


def pyiso8583_spec() -> dict[str, dict[str, Any]]:
    """The table as a `pyiso8583` spec (no header), for interoperability tests and tools."""
    spec: dict[str, dict[str, Any]] = {
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": ""}
    }
    for key, s in SPEC.items():
        spec[key] = {
            "data_enc": {"b": "b", "utf8": "utf-8"}.get(s.charset, "ascii"),
            "len_enc": "ascii",
            "len_type": {"fixed": 0, "llvar": 2, "lllvar": 3}[s.kind],
            "max_len": s.length,
            "desc": s.name,
        }
    return spec


def check_field(key: str, value: Any) -> None:
    """Raise `FormatError` unless `value` is a valid value of field `key`."""
    spec = _BY_KEY.get(key)
    if spec is None:
        if key == "t":
            _ascii("t", value, 4, "n")
            return
        raise FormatError(str(key), "not a field of PROTOCOL.md 3.1")
    _encode({"t": "0000", key: value})


# --- the construct reference parser -------------------------------------------------
def _present(bit: int) -> Any:
    return lambda ctx: bool(ctx._bitmap & _mask(bit))


_REFERENCE: Final = cs.Struct(
    "t" / SPEC["t"].con,
    "p" / SPEC["p"].con,
    "1" / cs.If(lambda ctx: ctx.p[0] & 0x80, SPEC["1"].con),
    "_bitmap"
    / cs.Computed(
        lambda ctx: (
            (int.from_bytes(ctx.p, "big") << 64)
            | (int.from_bytes(ctx["1"], "big") if ctx["1"] is not None else 0)
        )
    ),
    *(s.key / cs.If(_present(s.bit), s.con) for s in DATA_FIELDS),
    cs.Terminated,
)


def decode_reference(data: bytes) -> dict[str, Any]:
    """The same result as `decode`, parsed by construct from `SPEC` (slow; for tests)."""
    try:
        parsed = _REFERENCE.parse(bytes(data))
    except (cs.ConstructError, UnicodeDecodeError) as exc:
        raise FormatError("t", f"construct: {exc}") from None
    bitmap = parsed["_bitmap"]
    if bitmap & ~_KNOWN_MASK:
        raise FormatError(str(129 - (bitmap & ~_KNOWN_MASK).bit_length()), "unknown field")
    out = {k: v for k, v in parsed.items() if not k.startswith("_") and v is not None}
    for key, value in out.items():
        spec = SPEC[key]
        if spec.charset not in ("b", "utf8"):
            if len(value) != spec.length and spec.kind == "fixed":
                raise FormatError(key, "wrong length")
            if len(value.encode()) > spec.length:
                raise FormatError(key, "too long")
            if value:
                _check_class(key, value.encode("ascii"), spec.charset)
        elif spec.charset == "utf8" and len(value.encode()) > spec.length:
            raise FormatError(key, "too long")
    return out
