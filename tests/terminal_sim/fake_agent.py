"""A scripted stand-in for the agent, for unit tests of the terminal logic only.

It answers by PROTOCOL.md's echo rules with fixed loyalty values; the end-to-end tests
use the real agent and backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.transports import PtyPair
from protocols import iso8583, mac, messages

KEY = bytes(range(16))


@dataclass
class FakeAgent:
    key: bytes = KEY
    otp: str | None = None          # when set, inquiries without this OT get OV=1
    silent: int = 0                 # next N requests get no answer at all
    seen: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[tuple, bytes] = field(default_factory=dict)

    def exchange(self, message: bytes, response_mti: str, stan: str,
                 timeout: float) -> bytes | None:
        fields = iso8583.decode(message)
        self.seen.append(fields)
        if self.silent > 0:
            self.silent -= 1
            return None
        key = (fields["t"], fields["41"], fields["11"], fields["7"])
        if key in self.answers:  # PROTOCOL 3.6: the same request gets the same answer
            return self.answers[key]
        req = messages.parse_request(fields)
        if fields["t"] != "0800" and not mac.verify(message, self.key):
            resp = messages.respond(fields, "63")
        elif isinstance(req, messages.NetworkRequest):
            resp = messages.respond(fields, "00", {"ST": "ON", "QD": "0"})
        elif isinstance(req, messages.EnrollmentRequest):
            resp = messages.respond(fields, "00", {"MC": "M1", "NW": "1", "CB": "0",
                                                   "MG": "خوش آمدید", "RL": "عضو شدید"})
        elif isinstance(req, messages.InquiryRequest):
            if req.phone == "09350000000":
                resp = messages.respond(fields, "14")
            elif self.otp and req.otp != self.otp:
                resp = messages.respond(fields, "55" if req.otp else "00",
                                        None if req.otp else {"OV": "1", "MG": "کد؟"})
            else:
                d = min(10_000, req.amount // 10)
                resp = messages.respond(fields, "00", {
                    "QI": "Q1", "GA": str(req.amount), "DA": str(d),
                    "NA": str(req.amount - d), "CB": "5000", "TR": "silver", "MG": "سلام",
                    "RL": "تخفیف شما"})
        elif isinstance(req, messages.PurchaseAdvice):
            resp = messages.respond(fields, "00", {"EA": "700", "CB": "5700",
                                                   "RL": "اعتبار شما ۵۷۰۰ ریال"})
        else:
            resp = messages.respond(fields, "00")
        raw = iso8583.encode(resp) if fields["t"] == "0800" else mac.sign(resp, self.key)
        self.answers[key] = raw
        return raw


#: The `far_agent` fixture (conftest.py): a new pty served by a FakeAgent, and that agent.
FarAgent = Callable[..., tuple[PtyPair, FakeAgent]]
