"""The agent gives up quotes no terminal will use (issue 10.2), as pure logic: the handler
and forwarder on a real journal file, with a fake backend port."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from agent import service
from agent.forwarder import Forwarder
from agent.handler import Handler
from agent.journal import Journal
from firmware_bridge.link import LinkDown
from protocols import iso8583, mac, messages, mqtt
from tests.agent.test_agent_handler import (
    KEY,
    MID,
    PHONE,
    TID,
    Clock,
    FakeBackend,
    answer,
    header,
    items,
)

QUOTE = {"otp_required": False, "quote_id": "Q1", "gross": 100_000, "discount": 30_000,
         "net": 70_000, "balance": 0, "tier": "bronze", "display": "d", "receipt": "r"}


def inquiry(stan: int = 2) -> bytes:
    req = messages.InquiryRequest(header(stan), 100_000, phone=PHONE)
    return mac.sign(req.to_fields(), KEY)


def inquiry_key(stan: int = 2) -> str:
    return mqtt.idempotency_key(TID, "0100", f"{stan:06d}", "1123194000")


def test_agent_journals_a_release_with_its_91(parts) -> None:
    """No answer in time: 91, and a release of that inquiry is journaled before it."""
    handler, journal, backend = parts
    kicks: list[None] = []
    handler.forwarder = type("F", (), {"kick": lambda self: kicks.append(None)})()
    backend.answer = None  # the backend is hung: nothing comes back
    out = answer(handler.handle(inquiry()))
    assert kicks, "the forwarder must be woken for the release"
    assert out["39"] == "91"
    [entry] = journal.pending()
    assert entry.type == "release" and entry.key == f"{TID}:release:000002:1123194000"
    assert entry.body == {"inquiry_key": inquiry_key(), "quote_id": None, "reason": "unanswered"}
    assert journal.queued() == 0  # 0810 QD counts advices and reversals only
    # the terminal repeats the inquiry: the same 91 from the journal, no second release
    assert answer(handler.handle(inquiry())) == out
    assert len(journal.pending()) == 1
    # the forwarder sends it as a release under its own key
    backend.answer = {"released": 0}
    assert Forwarder(journal, backend).step() is True
    assert backend.calls[-1] == ("release", entry.key, entry.body)
    assert journal.pending() == []


def test_agent_releases_the_quote_of_an_undelivered_0110(parts) -> None:
    """The terminal never took the 0110 (PROTOCOL.md 2.2): its quote is released, and a
    repeat of the inquiry gets the no-discount answer, never the released quote."""
    handler, journal, backend = parts
    backend.answer = QUOTE
    out, commit = handler.answer(inquiry())
    assert out is not None and items(answer(out))["QI"] == "Q1"
    assert commit is not None
    commit(False)
    [entry] = journal.pending()
    assert entry.type == "release"
    assert entry.body == {"inquiry_key": inquiry_key(), "quote_id": "Q1", "reason": "undelivered"}
    again = answer(handler.handle(inquiry()))
    assert again["39"] == "91" and "48" not in again


def test_agent_delivered_0110_releases_nothing(parts) -> None:
    handler, journal, backend = parts
    backend.answer = QUOTE
    out, commit = handler.answer(inquiry())
    assert commit is not None
    commit(True)
    assert journal.pending() == []
    assert handler.handle(inquiry()) == out


def test_agent_enrols_with_a_mistyped_referrer(parts) -> None:
    """Issue 10.3: RF = 12345 goes to the backend as typed instead of a 14."""
    handler, _, backend = parts
    backend.answer = {"member_code": "ABC2345", "new": True, "balance": 0, "display": "ok"}
    req = messages.EnrollmentRequest(header(3), PHONE, referrer="۱۲۳۴۵")
    out = answer(handler.handle(mac.sign(req.to_fields(), KEY)))
    assert out["39"] == "00"
    assert backend.calls[-1][2] == {"phone": PHONE, "referrer": "12345"}


def test_agent_answers_00_to_the_reversal_of_a_declined_advice(parts) -> None:
    """Issue 10.4: the 0420 of a declined 0220 carries 4 = 0 and is answered 00."""
    handler, journal, backend = parts
    backend.up = False
    declined = messages.PurchaseAdvice(header(5, "1123194005"), 0, "123456789012", None, "51",
                                       100_000, quote_id="Q1")
    assert answer(handler.handle(mac.sign(declined.to_fields(), KEY)))["39"] == "00"
    rev = messages.ReversalAdvice(header(5, "1123194100"), 0, "123456789012", quote_id="Q1")
    out = answer(handler.handle(mac.sign(rev.to_fields(), KEY)))
    assert out["t"] == "0430" and out["39"] == "00"
    assert [p.type for p in journal.pending()] == ["advice", "reversal"]


def test_agent_format_error_answer_echoes_what_could_be_read(parts) -> None:
    """Issue 10.5: a bad field 4 still gets an 0110 the terminal can match (7, 11, 41)."""
    handler, _, _ = parts
    req = messages.InquiryRequest(header(9), 10, phone=PHONE)
    raw = mac.sign(req.to_fields(), KEY)
    bad = raw.replace(b"000000000010", b"00000000001a")
    out = iso8583.decode(handler.handle(bad))
    assert out["39"] == "30"
    for key in ("3", "7", "11", "12", "13", "41", "42"):
        assert out[key] == req.to_fields()[key], key
    assert "4" not in out  # the malformed field itself is not echoed


def test_agent_reversal_must_carry_its_advices_amount(parts) -> None:
    """3.2: a 0420 carries the original's field 4; 4 = 0 is the reversal of a declined
    purchase only, so a 0 (or any other amount) against an approved one is 13 (review)."""
    handler, journal, backend = parts
    backend.up = False
    approved = messages.PurchaseAdvice(header(5, "1123194005"), 1_480_000, "123456789012",
                                       "A1B2C3", "00", 1_500_000, quote_id="Q1")
    assert answer(handler.handle(mac.sign(approved.to_fields(), KEY)))["39"] == "00"
    for amount in (0, 1_480_001):
        rev = messages.ReversalAdvice(header(5, "1123194100"), amount, "123456789012",
                                      quote_id="Q1")
        assert answer(handler.handle(mac.sign(rev.to_fields(), KEY)))["39"] == "13"
    assert [p.type for p in journal.pending()] == ["advice"]
    rev = messages.ReversalAdvice(header(5, "1123194100"), 1_480_000, "123456789012",
                                  quote_id="Q1")
    assert answer(handler.handle(mac.sign(rev.to_fields(), KEY)))["39"] == "00"


def test_agent_format_error_in_an_overlong_pan_still_echoes_7_11_41(parts) -> None:
    """A PAN of 20 characters has a sound length prefix: its extent is known, so the
    fields after it are read and echoed in the 30 answer (review of 10.5)."""
    handler, _, _ = parts
    pan18 = "603799******123456"
    req = messages.InquiryRequest(header(9), 10, phone=PHONE, pan=pan18)
    raw = mac.sign(req.to_fields(), KEY)
    bad = raw.replace(b"18" + pan18.encode(), b"20" + pan18.encode() + b"78", 1)
    assert bad != raw
    out = iso8583.decode(handler.handle(bad))
    assert out["39"] == "30"
    for key in ("3", "7", "11", "41"):
        assert out.get(key) == req.to_fields()[key], key


class ReleaseDeaf(FakeBackend):
    """A backend that cannot answer a release (one from before releases existed drops
    it: its refusal would fail its own schema) but answers advices."""

    def request(self, type, key, body, deadline):  # type: ignore[no-untyped-def]
        self.calls.append((type, key, body))
        if type in ("release", "inquiry"):
            return None
        return mqtt.Response(type, "id", key, "00", {"earned": 0, "balance": 0})


def test_agent_an_unanswered_release_never_holds_up_the_advices(tmp_path: Path) -> None:
    """A release that gets no answer steps aside; the advices behind it go (review)."""
    journal = Journal(tmp_path / "journal.log")
    backend = ReleaseDeaf()
    clock = Clock()
    handler = Handler(journal=journal, backend=backend, mac_key=KEY, terminal_id=TID,
                      merchant_id=MID, monotonic=clock, wall=lambda: 1_800_000_000.0)
    try:
        assert answer(handler.handle(inquiry()))["39"] == "91"  # journals a release
        adv = messages.PurchaseAdvice(header(6, "1123194006"), 100_000, "123456789012",
                                      "A1B2C3", "00", 100_000, phone=PHONE)
        backend.up = False
        assert answer(handler.handle(mac.sign(adv.to_fields(), KEY)))["39"] == "00"
        backend.up = True
        wall = [1_800_000_010.0]
        fwd = Forwarder(journal, backend, wall=lambda: wall[0])
        assert fwd.step() is False  # the release: no answer
        assert fwd.step() is True  # the advice goes anyway
        assert [p.type for p in journal.pending()] == ["release"]
        assert fwd.step() is False  # the release is tried again once nothing else waits
        wall[0] += 3601  # past any hold's expiry: the release is given up, not kept for ever
        assert fwd.step() is True
        assert journal.pending() == []
    finally:
        journal.close()


class Line:
    """A link driver stand-in: how the terminal's side answered the 0110."""

    def __init__(self, clock: Clock, *, takes: float = 0.0, refuse: bool | None = None):
        self.clock, self.takes, self.refuse = clock, takes, refuse

    def send(self, message: bytes) -> None:
        self.clock.t += self.takes
        if self.refuse is not None:
            raise LinkDown("after 3 transmissions", refused=self.refuse)


@pytest.mark.parametrize(
    ("line", "released"),
    [
        ({"refuse": True}, True),  # NAKed every time: certainly not taken
        ({"refuse": False}, False),  # a silence: it may have been taken, ACKs lost
        ({"takes": 3.2}, True),  # ACKed after the terminal's 3 s: it had given up
        ({"takes": 0.5}, False),  # delivered in time
    ],
)
def test_agent_releases_only_a_0110_the_terminal_certainly_did_not_take(
    parts, line: dict, released: bool
) -> None:
    """Review of 10.2: after a silence the terminal may have sold with the DA."""
    handler, journal, backend = parts
    backend.answer = QUOTE
    clock = handler._monotonic
    agent = SimpleNamespace(handler=handler, monotonic=clock)
    service.Agent.on_message(agent, inquiry(), Line(clock, **line))  # type: ignore[arg-type]
    assert [p.type for p in journal.pending()] == (["release"] if released else [])
