"""The terminal logic against a scripted agent: no threads, no sockets, a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import iso8583, tlv
from protocols.persian import ascii_digits, jalali, persian_digits
from terminal_sim.bank import (
    APPROVED,
    CARD_BLOCKED,
    HOST_TIMEOUT,
    INSUFFICIENT_FUNDS,
    WRONG_PIN,
    BankError,
    BankHost,
)
from terminal_sim.clock import FakeClock, local_time, transmission_time
from terminal_sim.keypad import ENTER, Keypad, KeypadError, parse_amount
from terminal_sim.terminal import Terminal, TerminalConfig

from .fake_agent import KEY, FakeAgent

PAN = "6037991234567891"


def make(agent: FakeAgent | None = None) -> tuple[Terminal, FakeAgent, FakeClock]:
    agent = agent or FakeAgent()
    clock = FakeClock()
    cfg = TerminalConfig(mac_key=KEY, advice_attempts=3)
    return Terminal(cfg, agent, clock=clock), agent, clock


def test_keypad_takes_persian_digits_as_typed() -> None:
    pad = Keypad()
    assert pad.type("۰۹۱۲۱۲۳۴۵۶۷") == "۰۹۱۲۱۲۳۴۵۶۷"
    pad.press("5")
    pad.press("BACK")
    assert pad.press(ENTER) == ""
    with pytest.raises(KeypadError):
        pad.press("x")
    assert ascii_digits("۰۹۱٢") == "0912"
    assert parse_amount("۱۵۰٬۰۰۰") == 150000
    for bad in ("", "0", "12a", "-5", "1" * 13):
        with pytest.raises(KeypadError):
            parse_amount(bad)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=10**12 - 1), st.booleans())
def test_amount_round_trips_in_either_script(amount: int, persian: bool) -> None:
    text = persian_digits(str(amount)) if persian else f"{amount:,}"
    assert parse_amount(text) == amount


def test_bank_declines_by_rule() -> None:
    bank = BankHost()
    bank.open_account("6037990000000001", pin="1111", balance=1000)
    bank.open_account("6037990000000002", blocked=True)
    assert bank.charge("6037990000000001", "1111", 500).code == APPROVED
    assert bank.charge("6037990000000001", "1111", 600).code == INSUFFICIENT_FUNDS
    assert bank.charge("6037990000000001", "9999", 1).code == WRONG_PIN
    assert bank.charge("6037990000000002", "1234", 1).code == CARD_BLOCKED
    bank.timeouts = 1
    assert bank.charge("6037990000000001", "1111", 1).code == HOST_TIMEOUT
    assert bank.accounts["6037990000000001"].balance == 500
    with pytest.raises(BankError):
        bank.charge("6037990000000001", "1111", 0)
    with pytest.raises(BankError):
        bank.open_account("12")


def test_clock_fields_and_jalali_date() -> None:
    clock = FakeClock()  # 2026-11-23 19:40 UTC = 23:10 in Tehran
    assert transmission_time(clock.now()) == "1123194000"
    assert local_time(clock.now()) == ("231000", "1123")
    assert jalali(clock.now()) == "1405/09/02 23:10"
    clock.offset_s = 3600
    assert transmission_time(clock.now()) == "1123204000"


def test_sign_on_and_echo() -> None:
    term, agent, clock = make()
    assert term.echo_due()
    ex = term.sign_on()
    assert ex.code == "00" and ex.response.status == "ON" and term.signed_on
    assert agent.seen[-1]["70"] == "001" and "64" not in agent.seen[-1]
    assert not term.echo_due()
    clock.advance(term.config.echo_interval)
    assert term.echo_due()
    assert term.echo().response.queued == 0


def test_enroll_prints_rl_lines() -> None:
    term, agent, _ = make()
    ex = term.enroll("۰۹۱۲۱۲۳۴۵۶۷")
    assert ex.code == "00" and ex.response.new is True
    assert tlv.decode(agent.seen[-1]["48"])["PN"] == "۰۹۱۲۱۲۳۴۵۶۷"
    assert term.display == "خوش آمدید"
    assert "عضو شدید" in term.printer.last.text
    assert "۱۴۰۵/۰۹/۰۲" in term.printer.last.text


def test_sale_with_otp_discount_and_advice() -> None:
    term, agent, _ = make(FakeAgent(otp="4321"))
    asked = []
    sale = term.sale(200_000, PAN, "1234", phone="09121234567",
                     otp_provider=lambda: asked.append(1) or "4321")
    assert asked == [1] and sale.otp_asked
    assert sale.discount == 10_000 and sale.amount == 190_000 and sale.approved
    advice = agent.seen[-1]
    assert advice["t"] == "0220" and advice["4"] == "000000190000" and advice["39"] == "00"
    assert advice["2"] == "603799******7891"
    assert tlv.decode(advice["48"]) == {"GA": "200000", "QI": "Q1"}
    assert sale.advice_answered and "اعتبار شما" in sale.receipt.text
    assert "تخفیف باشگاه: ۱۰٬۰۰۰ ریال" in sale.receipt.text


def test_otp_read_in_persian_digits_is_sent_in_ascii() -> None:
    """The SMS prints the code in Persian digits; the customer types what is printed."""
    term, agent, _ = make(FakeAgent(otp="4321"))
    sale = term.sale(200_000, PAN, "1234", phone="09121234567", otp_provider=lambda: "۴۳۲۱")
    assert tlv.decode(agent.seen[-2]["48"])["OT"] == "4321"
    assert sale.discount == 10_000


def test_receipt_numbers_in_persian_digits_ids_as_they_are() -> None:
    term, _agent, _ = make()
    sale = term.sale(1_250_000, PAN, "1234", phone="09121234567")
    text = sale.receipt.text
    assert "مبلغ خرید: ۱٬۲۵۰٬۰۰۰ ریال" in text and "۶۰۳۷۹۹******۷۸۹۱" in text
    assert "T0000001" in text and "M00000000000001" in text
    assert not any(ch.isascii() and ch.isdigit() for line in text.splitlines()
                   if not line.startswith("پایانه") for ch in line)


def test_declined_sale_still_advises_to_release_hold() -> None:
    term, agent, _ = make()
    term.bank.open_account(PAN, balance=10)
    sale = term.sale(50_000, PAN, "1234", phone="09121234567")
    assert not sale.approved and sale.authorisation.code == INSUFFICIENT_FUNDS
    assert agent.seen[-1]["39"] == INSUFFICIENT_FUNDS
    assert "رد شد" in sale.receipt.text
    assert "مبلغ پرداختی" not in sale.receipt.text  # nothing was paid
    assert term.display == "رد شد: موجودی کافی نیست"
    seen, printed = len(agent.seen), len(term.printer.receipts)
    assert term.reverse(sale) is None  # no money was taken: nothing to give back
    assert "برگشت ممکن نیست" in term.display and "موجودی کافی نیست" in term.display
    assert len(agent.seen) == seen and len(term.printer.receipts) == printed
    assert not sale.reversed


def test_a_cancelled_quote_is_given_back_with_a_declined_advice() -> None:
    """The customer walks away after seeing the discount: the terminal sends the quote's
    0220 with 4 = 0 and 39 = 17 (customer cancellation), which ends the hold at once."""
    term, agent, _ = make()
    quote = term.quote(50_000, phone="09121234567")
    assert quote.quote_id
    ex = term.cancel(quote)
    assert ex is not None and ex.code == "00"
    sent = agent.seen[-1]
    assert sent["t"] == "0220" and sent["39"] == "17" and sent["4"] == "000000000000"
    assert quote.quote_id in sent["48"]
    assert term.display == "خرید لغو شد"


def test_a_purchase_is_reversed_once() -> None:
    term, agent, _ = make()
    sale = term.sale(50_000, PAN, "1234", phone="09121234567")
    ex = term.reverse(sale)
    assert ex is not None and ex.code == "00" and term.display == "خرید برگشت خورد"
    assert term.reverse(sale) is None and "قبلا برگشت" in term.display
    assert [f["t"] for f in agent.seen].count("0420") == 1


def test_anonymous_sale_sends_no_loyalty_message() -> None:
    term, agent, _ = make()
    sale = term.sale(50_000, PAN, "1234")
    assert sale.approved and agent.seen == [] and sale.advice is None


def test_unknown_member_pays_in_full_without_advice() -> None:
    term, agent, _ = make()
    sale = term.sale(50_000, PAN, "1234", phone="09350000000")
    assert sale.approved and sale.discount == 0 and sale.advice is None
    assert "عضو باشگاه نیست" in term.display and "عضو باشگاه نیست" in sale.receipt.text
    assert all(len(line) <= 32 for line in sale.receipt.lines[-3:])  # wrapped to the paper
    assert [f["t"] for f in agent.seen] == ["0100"]


def test_advice_repeated_with_same_identity_until_answered() -> None:
    term, agent, _ = make()
    sale0 = term.sale(100_000, PAN, "1234", phone="09121234567")
    assert sale0.advice_answered
    agent.silent = 2 + 1  # the inquiry and the first two advices get nothing
    sale = term.sale(100_000, PAN, "1234", phone="09121234567")
    advices = [f for f in agent.seen if f["t"] == "0220"][1:]
    assert len(advices) == 3
    assert {(f["11"], f["7"], f["41"]) for f in advices} == {(sale.stan, sale.transmitted_at,
                                                               "T0000001")}
    assert sale.advice_answered and sale.discount == 0  # no quote: full amount charged


def test_unanswered_advice_is_queued_and_resent_first() -> None:
    term, agent, _ = make()
    agent.silent = 1 + term.config.advice_attempts
    sale = term.sale(100_000, PAN, "1234", phone="09121234567")
    assert not sale.advice_answered and len(term.pending) == 1
    term.enroll("09351234567")
    assert term.pending == []
    resent = [f for f in agent.seen if f["t"] == "0220"]
    assert len(resent) == term.config.advice_attempts + 1
    assert len({iso8583.encode(f) for f in resent}) == 1  # byte for byte the same


def test_reversal_carries_original_identity() -> None:
    term, agent, _ = make()
    sale = term.sale(100_000, PAN, "1234", phone="09121234567")
    before = term.bank.accounts[PAN].balance
    ex = term.reverse(sale)
    rev = agent.seen[-1]
    assert ex.code == "00" and rev["t"] == "0420"
    assert rev["11"] == sale.stan and rev["37"] == sale.authorisation.rrn
    assert rev["4"] == f"{sale.amount:012d}"
    assert tlv.decode(rev["48"]) == {"QI": "Q1"}
    assert term.bank.accounts[PAN].balance == before + sale.amount


def test_wrong_mac_response_is_not_trusted() -> None:
    term, _agent, _ = make(FakeAgent(key=bytes(16)))
    ex = term.enroll("09121234567")
    assert ex.response is None and "MAC" in ex.note


def test_bad_config_is_refused() -> None:
    for kwargs in ({"terminal_id": "T1"}, {"merchant_id": "M"}, {"mac_key": b"k"}):
        with pytest.raises(ValueError):
            TerminalConfig(**kwargs)
