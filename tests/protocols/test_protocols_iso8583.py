"""The ISO 8583 codec: known messages, round trips, errors, and pyiso8583 as a referee."""

from __future__ import annotations

from typing import Any

import iso8583 as pyiso
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import iso8583
from protocols.iso8583 import FormatError
from tests.protocols.protocols_strategies import field_dicts

# The field table of PROTOCOL.md 3.1, written out independently of protocols.iso8583.
_A = {"data_enc": "ascii", "len_enc": "ascii"}
PROTOCOL_TABLE: dict[str, dict[str, Any]] = {
    "h": {**_A, "len_type": 0, "max_len": 0, "desc": "no header"},
    "t": {**_A, "len_type": 0, "max_len": 4, "desc": "MTI"},
    "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "bitmap"},
    "1": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "bitmap 2"},
    "2": {**_A, "len_type": 2, "max_len": 19, "desc": "PAN"},
    "3": {**_A, "len_type": 0, "max_len": 6, "desc": "processing code"},
    "4": {**_A, "len_type": 0, "max_len": 12, "desc": "amount"},
    "7": {**_A, "len_type": 0, "max_len": 10, "desc": "transmission"},
    "11": {**_A, "len_type": 0, "max_len": 6, "desc": "STAN"},
    "12": {**_A, "len_type": 0, "max_len": 6, "desc": "local time"},
    "13": {**_A, "len_type": 0, "max_len": 4, "desc": "local date"},
    "37": {**_A, "len_type": 0, "max_len": 12, "desc": "RRN"},
    "38": {**_A, "len_type": 0, "max_len": 6, "desc": "auth code"},
    "39": {**_A, "len_type": 0, "max_len": 2, "desc": "response code"},
    "41": {**_A, "len_type": 0, "max_len": 8, "desc": "terminal id"},
    "42": {**_A, "len_type": 0, "max_len": 15, "desc": "merchant id"},
    "48": {"data_enc": "utf-8", "len_enc": "ascii", "len_type": 3, "max_len": 999, "desc": "48"},
    "49": {**_A, "len_type": 0, "max_len": 3, "desc": "currency"},
    "64": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "MAC"},
    "70": {**_A, "len_type": 0, "max_len": 3, "desc": "network code"},
}
BINARY = ("p", "1", "64")

HEADER = {
    "7": "1123194000",
    "11": "000123",
    "12": "231000",
    "13": "1123",
    "41": "T0000001",
    "42": "M00000000000001",
}
MESSAGES: dict[str, dict[str, Any]] = {
    "network": {"t": "0800", **HEADER, "70": "301"},
    "enrollment": {"t": "0100", "3": "900000", **HEADER, "48": "PN01109121234567"},
    "inquiry": {
        "t": "0100",
        "2": "603799******1234",
        "3": "310000",
        "4": "000001500000",
        **HEADER,
        "48": "PN022۰۹۱۲۱۲۳۴۵۶۷RD00520000",
        "49": "364",
        "64": b"\x01\x02\x03\x04\x05\x06\x07\x08",
    },
    "advice": {
        "t": "0220",
        "3": "000000",
        "4": "000001480000",
        **HEADER,
        "37": "123456789012",
        "38": "AB12CD",
        "39": "00",
        "48": "GA0071500000QI004Q123",
        "64": b"\xff" * 8,
    },
    "reversal": {
        "t": "0420",
        "3": "000000",
        "4": "000001480000",
        **HEADER,
        "37": "123456789012",
        "48": "QI004Q123",
        "64": b"\x00" * 8,
    },
    "response": {
        "t": "0110",
        "3": "310000",
        "4": "000001500000",
        **HEADER,
        "39": "00",
        "48": "MG028سلام مشتری عزیز",
        "64": b"12345678",
    },
}


def to_pyiso(fields: dict[str, Any]) -> dict[str, str]:
    return {k: v.hex().upper() if k in BINARY else v for k, v in fields.items()}


def from_pyiso(fields: dict[str, str]) -> dict[str, Any]:
    return {k: bytes.fromhex(v) if k in BINARY else v for k, v in fields.items()}


def test_spec_matches_protocol_table() -> None:
    assert list(iso8583.SPEC) == [k for k in PROTOCOL_TABLE if k != "h"]
    assert iso8583.pyiso8583_spec() == {
        k: {**v, "desc": iso8583.pyiso8583_spec()[k]["desc"]} for k, v in PROTOCOL_TABLE.items()
    }


def test_known_answer_network_message() -> None:
    raw = iso8583.encode(MESSAGES["network"])
    assert raw == (
        b"0800"
        + bytes.fromhex("8238000000C00000")  # bits 1, 7, 11, 12, 13, 41, 42
        + bytes.fromhex("0400000000000000")  # bit 70
        + b"1123194000000123231000"
        + b"1123T0000001M00000000000001301"
    )


def test_known_answer_llvar_and_lllvar() -> None:
    raw = iso8583.encode(MESSAGES["inquiry"])
    assert b"16603799******1234310000" in raw
    value = MESSAGES["inquiry"]["48"].encode()
    assert b"%03d" % len(value) + value in raw
    assert raw.endswith(b"364\x01\x02\x03\x04\x05\x06\x07\x08")


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_round_trip_every_kind(name: str) -> None:
    fields = MESSAGES[name]
    raw = iso8583.encode(fields)
    back = iso8583.decode(raw)
    assert {k: v for k, v in back.items() if k not in ("p", "1")} == fields
    assert ("1" in back) == ("70" in fields)
    assert iso8583.encode(back) == raw


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_pyiso8583_reads_what_we_write_and_we_read_what_it_writes(name: str) -> None:
    fields = MESSAGES[name]
    ours = iso8583.encode(fields)
    theirs, _ = pyiso.encode(to_pyiso(fields), PROTOCOL_TABLE)
    assert bytes(theirs) == ours
    decoded, _ = pyiso.decode(ours, PROTOCOL_TABLE)
    assert from_pyiso(decoded) == iso8583.decode(bytes(theirs))


@settings(max_examples=150, deadline=None)
@given(field_dicts())
def test_random_messages_round_trip_and_match_pyiso8583(fields: dict[str, Any]) -> None:
    raw = iso8583.encode(fields)
    back = iso8583.decode(raw)
    assert {k: v for k, v in back.items() if k not in ("p", "1")} == fields
    assert iso8583.decode_reference(raw) == back
    theirs, _ = pyiso.encode(to_pyiso(fields), PROTOCOL_TABLE)
    assert bytes(theirs) == raw
    decoded, _ = pyiso.decode(raw, PROTOCOL_TABLE)
    assert from_pyiso(decoded) == back


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_only_ever_raises_format_error(data: bytes) -> None:
    try:
        fields = iso8583.decode(data)
    except FormatError as exc:
        assert exc.response_code == "30"
        assert exc.field in iso8583.SPEC or exc.field.isdigit()
        _, error = iso8583.decode_partial(data)
        assert error is not None and error.field == exc.field
        return
    assert iso8583.encode(fields)[:4] == data[:4]


@settings(max_examples=100, deadline=None)
@given(field_dicts(), st.data())
def test_a_cut_message_is_refused(fields: dict[str, Any], data: st.DataObject) -> None:
    raw = iso8583.encode(fields)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(FormatError):
        iso8583.decode(raw[:cut])


def _raw(**override: Any) -> dict[str, Any]:
    return {**MESSAGES["advice"], **override}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"3": "900000"}, "t"),  # no MTI
        (_raw(t="01A0"), "t"),
        (_raw(t="01000"), "t"),
        (_raw(**{"5": "1"}), "5"),
        (_raw(**{"128": "1"}), "128"),
        (_raw(**{"4": "1500"}), "4"),  # short fixed field
        (_raw(**{"4": "00000000150x"}), "4"),  # n field with a letter
        (_raw(**{"4": "۰۰۰۰۰۰۰۰۱۵۰۰"}), "4"),  # Persian digits are not n
        (_raw(**{"37": "12345678901-"}), "37"),  # an field with punctuation
        (_raw(**{"41": "T000000\x01"}), "41"),  # ans field with a control byte
        (_raw(**{"41": "T00000é1"}), "41"),
        (_raw(**{"2": "6" * 20}), "2"),  # LLVAR too long
        (_raw(**{"48": "x" * 1000}), "48"),
        (_raw(**{"48": "س" * 500}), "48"),  # 1000 UTF-8 bytes
        (_raw(**{"48": 12}), "48"),
        (_raw(**{"64": b"1234567"}), "64"),
        (_raw(**{"64": "12345678"}), "64"),
        (_raw(**{"11": 123}), "11"),
    ],
)
def test_encode_refuses_with_the_field_named(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(FormatError) as info:
        iso8583.encode(fields)
    assert info.value.field == field
    assert info.value.response_code == "30"
    assert f"field {field}" in str(info.value)


def _wire(name: str = "advice") -> bytes:
    return iso8583.encode(MESSAGES[name])


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "t"),
        (b"080", "t"),
        (b"08X0" + bytes(8), "t"),
        (b"0800\x00\x00", "p"),
        (b"0800\x80" + bytes(7), "1"),  # secondary bitmap announced, missing
        (b"0800" + bytes.fromhex("0800000000000000"), "5"),  # bit 5 not in the table
        (b"0800" + bytes.fromhex("8000000000000000") + bytes.fromhex("8000000000000000"), "65"),
        (b"0800" + bytes.fromhex("4000000000000000") + b"1", "2"),  # prefix runs past
        (b"0800" + bytes.fromhex("4000000000000000") + b"1x12", "2"),  # prefix not digits
        (b"0800" + bytes.fromhex("4000000000000000") + b"05123", "2"),  # field runs past
        (b"0800" + bytes.fromhex("4000000000000000") + b"2012345678901234567890", "2"),
        (b"0800" + bytes.fromhex("2000000000000000") + b"31000A", "3"),
        (b"0800" + bytes.fromhex("0000000000010000") + b"003\xff\xfe\xfd", "48"),
        (_wire() + b"\x00", "p"),  # trailing byte: the bitmap does not account for it
        (_wire()[:-1], "64"),
    ],
)
def test_decode_refuses_with_the_field_named(data: bytes, field: str) -> None:
    with pytest.raises(FormatError) as info:
        iso8583.decode(data)
    assert info.value.field == field
    assert info.value.response_code == "30"


def test_decode_partial_keeps_what_came_before_the_error() -> None:
    raw = _wire()
    fields, error = iso8583.decode_partial(raw[:-3])
    assert error is not None and error.field == "64"
    assert fields["11"] == "000123" and fields["41"] == "T0000001" and "64" not in fields
    assert iso8583.decode_partial(raw) == (iso8583.decode(raw), None)


def test_decode_partial_reads_past_a_field_with_bad_content() -> None:
    """Issue 10.5: field 4 `00000000001a` has a known extent, so 7, 11, 41 behind it are
    still read (and echoed in the 30 answer, PROTOCOL.md 3.7); the error names field 4."""
    from protocols import messages

    fields = {"t": "0100", "3": "310000", "4": "000000000010", "7": "1123194000",
              "11": "000123", "12": "231000", "13": "1123", "41": "T0000001",
              "42": "M00000000000001", "48": "PN01109121234567"}
    raw = iso8583.encode(fields).replace(b"000000000010", b"00000000001a")
    got, error = iso8583.decode_partial(raw)
    assert error is not None and error.field == "4"
    assert "4" not in got
    assert {k: got[k] for k in ("3", "7", "11", "12", "13", "41", "42")} == {
        k: fields[k] for k in ("3", "7", "11", "12", "13", "41", "42")
    }
    answer = messages.respond(got, "30")
    for key in ("3", "7", "11", "12", "13", "41", "42"):
        assert answer[key] == fields[key]
    with pytest.raises(FormatError):
        iso8583.decode(raw)  # the strict decoder still refuses it


def test_decode_partial_stops_where_the_next_field_cannot_be_found() -> None:
    raw = _wire()
    fields, error = iso8583.decode_partial(raw[:-3])
    assert error is not None and error.field == "64" and "64" not in fields


def test_given_bitmaps_are_ignored_and_recomputed() -> None:
    fields = {**MESSAGES["enrollment"], "p": b"\xff" * 8, "1": b"\xff" * 8}
    assert iso8583.encode(fields) == iso8583.encode(MESSAGES["enrollment"])


def test_check_field() -> None:
    iso8583.check_field("4", "000000000001")
    iso8583.check_field("t", "0100")
    for key, value in (("4", "1"), ("t", "01"), ("99", "1"), ("64", b"1")):
        with pytest.raises(FormatError) as info:
            iso8583.check_field(key, value)
        assert info.value.field == key


def test_reference_parser_agrees_on_every_kind() -> None:
    for fields in MESSAGES.values():
        raw = iso8583.encode(fields)
        assert iso8583.decode_reference(raw) == iso8583.decode(raw)
    with pytest.raises(FormatError):
        iso8583.decode_reference(_wire() + b"\x00")


@settings(max_examples=200, deadline=None)
@given(field_dicts(), st.data())
def test_fast_path_and_construct_table_agree_on_damaged_messages(
    fields: dict[str, Any], data: st.DataObject
) -> None:
    raw = bytearray(iso8583.encode(fields))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.sampled_from([0x00, 0x30, 0x39, 0x41, 0x7F, 0x80, 0xD8, 0xFF]))
    try:
        ours = iso8583.decode(bytes(raw))
    except FormatError:
        with pytest.raises(FormatError):
            iso8583.decode_reference(bytes(raw))
        return
    assert iso8583.decode_reference(bytes(raw)) == ours
