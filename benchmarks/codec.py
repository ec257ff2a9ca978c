"""ISO 8583 codec speed: protocols.iso8583 against pyiso8583, measured in the same run.

Prints encode and decode rates (messages per second) for the four message kinds and the
ratio ours / pyiso8583 (goal: >= 1.0). For the record it also measures the two construct
alternatives the codec could have used for decoding: the generic `Struct.parse` of the
table (`decode_reference`) and construct's `.compile()` of an equivalent table.

Usage: python3 benchmarks/codec.py [--seconds 0.4]   (about 15 s by default)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import construct as cs
import iso8583 as pyiso
from construct import this

from protocols import iso8583, mac, messages
from protocols.messages import Header

KEY = bytes(range(16))
HEADER = Header("1123194000", "000123", "231000", "1123", "T0000001", "M00000000000001")
BINARY = ("p", "1", "64")


def sample_messages() -> dict[str, dict[str, Any]]:
    requests: dict[str, messages.Request] = {
        "network 0800": messages.NetworkRequest(HEADER, "301"),
        "inquiry 0100": messages.InquiryRequest(
            HEADER, 1_500_000, phone="09121234567", redeem=20_000, pan="603799******1234"
        ),
        "advice 0220": messages.PurchaseAdvice(
            HEADER, 1_480_000, "123456789012", "AB12CD", "00", 1_500_000, quote_id="Q7f3a9c"
        ),
        "reversal 0420": messages.ReversalAdvice(HEADER, 1_480_000, "123456789012", "Q7f3a9c"),
    }
    out = {}
    for name, request in requests.items():
        fields = request.to_fields()
        if request.mti != "0800":
            mac.sign(fields, KEY)
        out[name] = fields
    return out


def compiled_construct() -> Any:
    """The table of iso8583.SPEC in a form construct can compile (no validation)."""
    items: list[Any] = [
        "t" / cs.StringEncoded(cs.Bytes(4), "ascii"),
        "p" / cs.Bytes(8),
        "f1" / cs.If((this.p[0] & 0x80) != 0, cs.Bytes(8)),
    ]
    for s in iso8583.DATA_FIELDS:
        if s.kind == "fixed":
            raw: Any = cs.Bytes(s.length)
        else:
            raw = cs.Prefixed(iso8583._AsciiLength(2 if s.kind == "llvar" else 3), cs.GreedyBytes)
        if s.charset != "b":
            raw = cs.StringEncoded(raw, "utf8" if s.charset == "utf8" else "ascii")
        bit = s.bit
        if bit <= 64:
            con = cs.If((this.p[(bit - 1) // 8] & (0x80 >> ((bit - 1) % 8))) != 0, raw)
        else:
            present = (this.f1[(bit - 65) // 8] & (0x80 >> ((bit - 65) % 8))) != 0
            con = cs.If(this.f1 != None, cs.If(present, raw))  # noqa: E711 (an expression)
        items.append(f"f{s.key}" / con)
    return cs.Struct(*items, cs.Terminated).compile()


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second, best of three runs of about `seconds / 3` each."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - start
        if took > 0.02:
            break
        n *= 4
    runs = max(1, int(n * seconds / 3 / took))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(runs):
            fn()
        best = max(best, runs / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="time per measurement")
    args = parser.parse_args()
    spec = iso8583.pyiso8583_spec()
    compiled = compiled_construct()
    print(f"{'message':<14} {'op':<7} {'ours/s':>10} {'pyiso/s':>10} {'ratio':>6}")
    ratios: dict[str, list[float]] = {"encode": [], "decode": []}
    alternatives: list[tuple[str, float, float, float]] = []
    for name, fields in sample_messages().items():
        raw = iso8583.encode(fields)
        theirs = {k: v.hex().upper() if k in BINARY else v for k, v in fields.items()}
        assert bytes(pyiso.encode(dict(theirs), spec)[0]) == raw
        assert iso8583.decode_reference(raw) == iso8583.decode(raw)
        for op, ours, ref in (
            (
                "encode",
                lambda f=fields: iso8583.encode(f),
                lambda d=theirs: pyiso.encode(dict(d), spec),
            ),
            ("decode", lambda r=raw: iso8583.decode(r), lambda r=raw: pyiso.decode(r, spec)),
        ):
            a, b = rate(ours, args.seconds), rate(ref, args.seconds)
            ratios[op].append(a / b)
            print(f"{name:<14} {op:<7} {a:>10,.0f} {b:>10,.0f} {a / b:>6.2f}")
        plan = rate(lambda r=raw: iso8583.decode(r), args.seconds / 2)
        generic = rate(lambda r=raw: iso8583.decode_reference(r), args.seconds / 2)
        comp = rate(lambda r=raw: compiled.parse(r), args.seconds / 2)
        alternatives.append((name, plan, comp, generic))
    for op, values in ratios.items():
        print(f"{op}: worst ratio {min(values):.2f}, best {max(values):.2f} (goal >= 1.0)")
    print()
    print("decode alternatives (messages/s): precomputed plan (used) vs construct")
    print(f"{'message':<14} {'plan':>10} {'compiled':>10} {'Struct':>10}")
    for name, plan, comp, generic in alternatives:
        print(f"{name:<14} {plan:>10,.0f} {comp:>10,.0f} {generic:>10,.0f}")


if __name__ == "__main__":
    main()
