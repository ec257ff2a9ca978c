"""Persian texts: digits, Jalali dates, and the byte limits of MG and RL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend import texts
from backend.sms.senders import otp_token
from protocols import tlv

ASCII_DIGIT = re.compile(r"[0-9]")
N12 = 10**12 - 1  # the largest amount field 4 can carry


def sms_parts(text: str) -> int:
    """How many SMS parts a Persian (UCS-2) text takes: 70 characters in one, 67 each in more."""
    n = len(text.encode("utf-16-le")) // 2
    return 1 if n <= 70 else -(-n // 67)


def test_fa_digits_and_rials() -> None:
    assert texts.format_rials(0) == "۰"
    assert texts.format_rials(999) == "۹۹۹"
    assert texts.format_rials(1000) == "۱٬۰۰۰"
    assert texts.format_rials(1_250_000) == "۱٬۲۵۰٬۰۰۰"
    assert texts.format_rials(-20_000) == "-۲۰٬۰۰۰"
    for bad in (1.5, "100", True, None):
        with pytest.raises(ValueError):
            texts.format_rials(bad)  # type: ignore[arg-type]


def test_jalali_known_dates() -> None:
    # Nowruz 1405 is 21 March 2026; noon UTC is 15:30 in Tehran (UTC+3:30, no DST).
    assert texts.jalali(datetime(2026, 3, 21, 12, 0, tzinfo=UTC)) == "۱۴۰۵/۰۱/۰۱ ۱۵:۳۰"
    # A naive datetime is UTC.
    assert texts.jalali(datetime(2026, 3, 21, 12, 0)) == "۱۴۰۵/۰۱/۰۱ ۱۵:۳۰"
    # 21:00 UTC on the 20th is already the 21st in Tehran.
    assert texts.jalali(datetime(2026, 3, 20, 21, 0, tzinfo=UTC)) == "۱۴۰۵/۰۱/۰۱ ۰۰:۳۰"
    assert texts.jalali(datetime(2026, 3, 20, 20, 29, tzinfo=UTC)) == "۱۴۰۴/۱۲/۲۹ ۲۳:۵۹"
    # Any other zone is converted to Tehran time.
    plus2 = timezone(timedelta(hours=2))
    assert texts.jalali(datetime(2024, 3, 20, 8, 0, tzinfo=plus2)) == "۱۴۰۳/۰۱/۰۱ ۰۹:۳۰"
    with pytest.raises(ValueError):
        texts.jalali("2026-03-21")  # type: ignore[arg-type]


def test_purchase_sms_content() -> None:
    when = datetime(2026, 3, 21, 12, 0, tzinfo=UTC)
    sms = texts.purchase_sms(
        shop_name="فروشگاه نمونه", amount=1_250_000, earned=37_500, balance=120_000, when=when
    )
    assert sms.splitlines()[0] == "فروشگاه نمونه"
    assert "۱٬۲۵۰٬۰۰۰" in sms and "۳۷٬۵۰۰" in sms and "۱۲۰٬۰۰۰" in sms
    assert "۱۴۰۵/۰۱/۰۱ ۱۵:۳۰" in sms
    assert not ASCII_DIGIT.search(sms)
    assert sms_parts(sms) <= 2


def test_welcome_and_otp_sms_fit_one_part() -> None:
    welcome = texts.welcome_sms(shop_name="فروشگاه نمونه", member_code="104729")
    assert "۱۰۴۷۲۹" in welcome and "فروشگاه نمونه" in welcome
    # how to stop marketing SMS: the stop word the worker's consent rule acts on
    assert welcome.splitlines()[-1] == texts.WELCOME_STOP_LINE and "«لغو»" in welcome
    assert sms_parts(welcome) == 1
    otp = texts.otp_sms(shop_name="فروشگاه ۲۴ ساعته", code="048213")
    assert "۰۴۸۲۱۳" in otp and sms_parts(otp) == 1
    # The code is the last digit run: the gateway's verify/lookup token reads it back.
    assert otp_token(otp) == "048213"
    # A member code with letters is shown as issued.
    assert "M-12" in texts.welcome_sms(shop_name="x", member_code="M-12")


def test_shop_name_is_a_parameter_and_cannot_break_lines() -> None:
    sms = texts.welcome_sms(shop_name="نان\nسنگک\r\n", member_code="7")
    assert sms.splitlines()[0] == "نان سنگک"
    receipt = texts.enroll_receipt(shop_name="A\nB", member_code="7", balance=0, new=True)
    assert receipt.splitlines()[0] == "A B"
    # No shop name: no empty first line.
    assert texts.welcome_sms(shop_name="", member_code="7").splitlines()[0].startswith("خوش")


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="amount"):
        texts.purchase_sms(shop_name="x", amount=-1, earned=0, balance=0, when=datetime.now(UTC))
    with pytest.raises(ValueError, match="earned"):
        texts.advice_receipt(earned=True, balance=0, tier="gold")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="code"):
        texts.otp_sms(shop_name="x", code="12a4")
    with pytest.raises(ValueError, match="code"):
        texts.otp_sms(shop_name="x", code="۱۲۳۴")
    with pytest.raises(ValueError, match="member_code"):
        texts.enroll_display(new=True, member_code="  ")
    with pytest.raises(ValueError, match="new"):
        texts.enroll_display(new=1, member_code="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offers"):
        texts.inquiry_receipt(gross=1, discount=0, net=1, balance=0, tier="", offers="abc")


def test_displays_and_receipts_read_well() -> None:
    assert texts.enroll_display(new=True, member_code="104729") == "عضویت انجام شد. کد: ۱۰۴۷۲۹"
    assert "۱۰۴۷۲۹" in texts.enroll_display(new=False, member_code="104729")
    shown = texts.inquiry_display(discount=20_000, net=1_480_000, tier="silver")
    assert "۲۰٬۰۰۰" in shown and "۱٬۴۸۰٬۰۰۰" in shown
    assert "بدون تخفیف" in texts.inquiry_display(discount=0, net=5_000, tier="gold")
    assert texts.tier_label("silver") == "نقره‌ای" and texts.tier_label("VIP") == "VIP"
    receipt = texts.inquiry_receipt(
        gross=1_500_000, discount=20_000, net=1_480_000, balance=5_000, tier="silver",
        offers=["هدیه تولد"],
    )  # fmt: skip
    lines = receipt.split("\n")
    assert "سطح: نقره‌ای" in lines and "- هدیه تولد" in lines
    assert "قابل پرداخت: ۱٬۴۸۰٬۰۰۰" in lines
    advice = texts.advice_receipt(earned=44_400, balance=49_400, tier="gold")
    assert "اعتبار این خرید: ۴۴٬۴۰۰" in advice.split("\n")
    mg = texts.otp_display()
    assert mg and len(mg.encode()) <= texts.MG_LIMIT


def test_fit_never_splits_a_character() -> None:
    assert texts.fit("سلام", 3) == "س"
    assert texts.fit("a😀", 4) == "a"
    assert texts.fit("abc", 3) == "abc"


def test_receipt_drops_offers_before_amounts() -> None:
    offers = [f"پیشنهاد ویژه شماره {i} برای همه" for i in range(20)]
    receipt = texts.inquiry_receipt(
        gross=N12, discount=N12, net=N12, balance=N12, tier="gold", offers=offers
    )
    assert len(receipt.encode()) <= texts.RL_LIMIT
    assert "مانده اعتبار: ۹۹۹٬۹۹۹٬۹۹۹٬۹۹۹" in receipt.split("\n")
    assert texts.AMOUNTS_IN_RIALS in receipt.split("\n")


amounts = st.integers(min_value=0, max_value=10**40)
field4_amounts = st.integers(min_value=0, max_value=N12)
names = st.text(max_size=300)
codes = st.text(min_size=1, max_size=80).filter(lambda s: s.strip() != "")


def _check_mg(text: str) -> None:
    data = text.encode("utf-8")
    assert len(data) <= texts.MG_LIMIT
    assert data.decode("utf-8") == text


def _check_rl(text: str) -> None:
    data = text.encode("utf-8")
    assert len(data) <= texts.RL_LIMIT
    assert data.decode("utf-8") == text


@settings(max_examples=150, deadline=None)
@given(
    shop=names, code=codes, new=st.booleans(), a=amounts, b=amounts, c=amounts, d=amounts,
    tier=names, offers=st.lists(names, max_size=12),
)  # fmt: skip
def test_byte_limits_hold_for_any_input(
    shop: str, code: str, new: bool, a: int, b: int, c: int, d: int, tier: str, offers: list[str]
) -> None:
    try:
        texts._clean(code, "member_code")
    except ValueError:
        return  # only control characters: rejected, as test_bad_input_is_rejected shows
    _check_mg(texts.enroll_display(new=new, member_code=code))
    _check_mg(texts.inquiry_display(discount=a, net=b, tier=tier))
    _check_rl(texts.enroll_receipt(shop_name=shop, member_code=code, balance=a, new=new))
    _check_rl(
        texts.inquiry_receipt(gross=a, discount=b, net=c, balance=d, tier=tier, offers=offers)
    )
    _check_rl(texts.advice_receipt(earned=a, balance=b, tier=tier))
    # What the agent will put in field 48 is accepted by the TLV codec as it is.
    mg = texts.inquiry_display(discount=a, net=b, tier=tier)
    rl = texts.inquiry_receipt(gross=a, discount=b, net=c, balance=d, tier=tier, offers=offers)
    assert tlv.decode(tlv.encode({"MG": mg, "RL": rl})) == {"MG": mg, "RL": rl}


@settings(max_examples=100, deadline=None)
@given(
    shop=names, a=field4_amounts, b=field4_amounts, c=field4_amounts, d=field4_amounts,
    tier=names, offers=st.lists(names, max_size=6),
)  # fmt: skip
def test_receipt_lines_fit_the_printer(
    shop: str, a: int, b: int, c: int, d: int, tier: str, offers: list[str]
) -> None:
    receipts = [
        texts.enroll_receipt(shop_name=shop, member_code="104729", balance=a, new=True),
        texts.inquiry_receipt(gross=a, discount=b, net=c, balance=d, tier=tier, offers=offers),
        texts.advice_receipt(earned=a, balance=b, tier=tier),
    ]
    for receipt in receipts:
        _check_rl(receipt)
        for line in receipt.split("\n"):
            assert texts.columns(line) <= texts.PRINTER_COLUMNS, line
    # The amounts always survive, whatever the names and offers.
    assert f"قابل پرداخت: {texts.format_rials(c)}" in receipts[1].split("\n")


@settings(max_examples=100, deadline=None)
@given(
    shop=names, a=amounts, b=amounts, c=amounts,
    when=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)),
)  # fmt: skip
def test_sms_texts_use_persian_digits(shop: str, a: int, b: int, c: int, when: datetime) -> None:
    sms = texts.purchase_sms(shop_name=shop, amount=a, earned=b, balance=c, when=when)
    body = sms.split("\n")[-4:]  # what follows the shop name
    assert not ASCII_DIGIT.search("\n".join(body))
    assert body[0] == f"خرید: {texts.format_rials(a)} ریال"
