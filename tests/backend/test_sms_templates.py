"""SMS templates, part counting and cost (backend.sms_templates)."""

from __future__ import annotations

import math
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.sms_templates import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Template,
    TemplateError,
    estimate,
    is_gsm7,
    sms_cost,
    sms_parts,
)


def test_unknown_placeholder_is_refused_by_name() -> None:
    with pytest.raises(TemplateError, match=r"unknown placeholder \{nmae\}"):
        Template.parse("سلام {nmae}")
    for bad, why in (("{}", "name"), ("{0}", "name"), ("{balance:,}", "format"),
                     ("{name!r}", "format"), ("سلام {name", "brace"), ("  ", "empty")):
        with pytest.raises(TemplateError, match=why):
            Template.parse(bad)
    with pytest.raises(TemplateError, match="unknown"):
        Template.parse("{balance}", allowed={"name"})


def test_render_in_persian_digits_rials_and_jalali() -> None:
    t = Template.parse("{name} عزیز، اعتبار {balance} تا {expiry_date} در {shop}. {link} "
                       "{{کد}} {days} روز")
    text = t.render({"name": "مریم", "balance": 1_250_000, "expiry_date": date(2026, 3, 21),
                     "shop": "کافه", "link": "https://c.ir/m/Ab12", "days": 30})
    assert text == ("مریم عزیز، اعتبار ۱٬۲۵۰٬۰۰۰ ریال تا ۱۴۰۵/۰۱/۰۱ در کافه. "
                    "https://c.ir/m/Ab12 {کد} ۳۰ روز")
    with pytest.raises(TemplateError, match="balance"):
        t.render({"name": "x"})
    with pytest.raises(TemplateError, match="rials"):
        Template.parse("{balance}").render({"balance": "12"})
    with pytest.raises(TemplateError, match="ASCII"):
        Template.parse("{link}").render({"link": "لینک"})
    assert Template.parse("{name}").render({"name": "a\nb{x}"}) == "ab{x}"
    # the zero-width non-joiner is spelling, kept (a tier name, a member's name)
    assert Template.parse("{tier}").render({"tier": "نقره\u200cای"}) == "نقره\u200cای"


def test_part_boundaries() -> None:
    assert sms_parts("a" * 160).parts == 1 and sms_parts("a" * 161).parts == 2
    assert sms_parts("a" * 306).parts == 2 and sms_parts("a" * 307).parts == 3
    assert sms_parts("س" * 70).parts == 1 and sms_parts("س" * 71).parts == 2
    assert sms_parts("س" * 134).parts == 2 and sms_parts("س" * 135).parts == 3
    assert sms_parts("").parts == 0
    # extension characters take two septets; an escape pair is never split
    assert sms_parts("€" * 80).units == 160 and sms_parts("€" * 80).parts == 1
    assert sms_parts("a" + "€" * 80).parts == 2
    assert sms_parts("a" * 152 + "€" + "a" * 10).parts == 2
    # ASCII outside GSM 03.38 (the backtick) forces UCS-2
    assert not is_gsm7("`") and sms_parts("a`").encoding == "UCS-2"
    assert sms_parts("Hello {x}").encoding == "GSM-7"
    assert "$" in GSM7_BASIC and "€" in GSM7_EXTENSION and "`" not in GSM7_BASIC


@settings(deadline=None)
@given(st.text(alphabet=st.sampled_from([*sorted(GSM7_BASIC), "س", "۱", "😀"]), max_size=500))
def test_parts_match_the_formula_for_single_unit_texts(text: str) -> None:
    p = sms_parts(text)
    if "😀" in text:
        assert p.encoding == "UCS-2" and p.units == len(text) + text.count("😀")
        return
    single, multi = (160, 153) if p.encoding == "GSM-7" else (70, 67)
    n = len(text)
    assert p.parts == (0 if n == 0 else 1 if n <= single else math.ceil(n / multi))


def test_cost_and_campaign_estimate() -> None:
    assert sms_cost("س" * 71, 1_200) == 2_400
    with pytest.raises(ValueError):
        sms_cost("x", -1)
    t = Template.parse("{name} " + "س" * 60)
    e = estimate(t, [{"name": "علی"}, {"name": "محمدحسین عبداللهی"}], 1_000)
    assert (e.members, e.parts, e.max_parts, e.cost) == (2, 3, 2, 3_000)
