"""Automatic messages due on a Tehran date (backend.occasions)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import jdatetime
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.occasions import (
    AutoMessage,
    MemberFacts,
    OccasionError,
    due_messages,
    load_occasions,
    parse_jalali,
    tehran_date,
)

OCC = load_occasions()


def J(text: str) -> date:
    return parse_jalali(text)


def keys(member, msgs, today):
    return [d.idempotency_key for d in due_messages(member, msgs, today, OCC)]


def test_the_shipped_list_has_every_occasion_of_the_issue() -> None:
    for key in ("nowruz", "yalda", "mothers_day", "fathers_day", "teachers_day", "ramadan",
                "eid_fitr", "eid_adha", "eid_ghadir", "mabath", "nime_shaban", "mawlid"):
        assert key in OCC
    assert OCC["nowruz"].on(1405) == [date(2026, 3, 21)]
    assert OCC["yalda"].on(1405) == [date(2026, 12, 21)]
    assert OCC["teachers_day"].on(1405) == [date(2026, 5, 2)]
    assert J("1405/12/19") in OCC["eid_fitr"].estimated
    assert J("1405/01/01") not in OCC["eid_fitr"].estimated


def test_nowruz_and_yalda_due_once_with_grace() -> None:
    m = MemberFacts(7, date(2025, 1, 1))
    msgs = [AutoMessage("occasion:nowruz", "occasion", "t", occasion="nowruz"),
            AutoMessage("occasion:yalda", "occasion", "t", occasion="yalda", offset_days=-1)]
    assert keys(m, msgs, date(2026, 3, 20)) == []
    assert keys(m, msgs, date(2026, 3, 21)) == ["auto:occasion:nowruz:7:2026-03-21"]
    assert keys(m, msgs, date(2026, 3, 23)) == ["auto:occasion:nowruz:7:2026-03-21"]
    assert keys(m, msgs, date(2026, 3, 24)) == []
    # the day before Yalda night (30 Azar 1405 = 2026-12-21)
    assert keys(m, msgs, date(2026, 12, 20)) == ["auto:occasion:yalda:7:2026-12-20"]


def test_birthday_jalali_and_converted_gregorian() -> None:
    msg = [AutoMessage("birthday", "birthday", "t")]
    a = MemberFacts(1, date(2024, 1, 1), birthday_jalali=(5, 14))
    assert keys(a, msg, J("1405/05/14")) == ["auto:birthday:1:" + J("1405/05/14").isoformat()]
    # born 1990-03-21 (Gregorian only) = 1369/01/01: the birthday is every Nowruz
    b = MemberFacts(2, date(2024, 1, 1), birthday_gregorian=date(1990, 3, 21))
    assert [d.occurrence for d in due_messages(b, msg, date(2027, 3, 21), OCC)] == [
        J("1406/01/01")]


def test_esfand_30_birthday_in_a_common_year() -> None:
    msg = [AutoMessage("birthday", "birthday", "t")]
    m = MemberFacts(3, date(2024, 1, 1), birthday_jalali=(12, 30))
    assert not jdatetime.date(1404, 1, 1).isleap()
    got = due_messages(m, msg, J("1404/12/29"), OCC, grace_days=0)
    assert [d.occurrence for d in got] == [J("1404/12/29")]


def test_anniversary_winback_expiring_tier_up_and_segment() -> None:
    m = MemberFacts(
        9, J("1404/03/10"), last_purchase_on=date(2026, 10, 1), segment="at_risk",
        expiring=((date(2026, 12, 31), 30_000), (date(2026, 12, 31), 20_000)),
        tier_ups=((date(2026, 11, 5), "silver", 100_000_000),),
    )
    msgs = [
        AutoMessage("anniversary", "anniversary", "t"),
        AutoMessage("winback", "winback", "t", days=45),
        AutoMessage("expiring", "expiring", "t", days=7),
        AutoMessage("tier_up", "tier_up", "t"),
        AutoMessage("vip", "winback", "t", days=45, segment="champion"),
    ]
    ann = due_messages(m, msgs, J("1405/03/10"), OCC)
    assert [(d.message_key, d.values["years"]) for d in ann] == [("anniversary", 1)]
    assert keys(m, msgs, date(2026, 11, 15)) == ["auto:winback:9:2026-11-15"]
    exp = due_messages(m, msgs, date(2026, 12, 24), OCC)
    assert [(d.message_key, d.values["amount"]) for d in exp] == [("expiring", 50_000)]
    assert keys(m, msgs, date(2026, 11, 5)) == ["auto:tier_up:9:2026-11-05"]


@settings(max_examples=30, deadline=None)
@given(st.dates(date(2020, 1, 1), date(2027, 12, 1)), st.integers(0, 5))
def test_a_year_of_days_gives_each_occurrence_one_key(start: date, grace: int) -> None:
    m = MemberFacts(5, start, birthday_jalali=(1, 1), last_purchase_on=start)
    msgs = [AutoMessage("birthday", "birthday", "t"),
            AutoMessage("occasion:yalda", "occasion", "t", occasion="yalda"),
            AutoMessage("winback", "winback", "t", days=30)]
    seen: dict[str, date] = {}
    for i in range(366):
        day = start + timedelta(days=i)
        for d in due_messages(m, msgs, day, OCC, grace_days=grace):
            assert d.occurrence <= day <= d.occurrence + timedelta(days=grace)
            seen.setdefault(d.idempotency_key, day)
    per_kind = {k: sum(1 for x in seen if x.startswith(f"auto:{k}:")) for k in
                ("birthday", "occasion:yalda", "winback")}
    assert per_kind["winback"] == 1
    assert 0 <= per_kind["birthday"] <= 2 and 0 <= per_kind["occasion:yalda"] <= 2


def test_bad_messages_and_lists_are_refused(tmp_path) -> None:
    with pytest.raises(OccasionError, match="kind"):
        AutoMessage("x", "party", "t")
    with pytest.raises(OccasionError, match="days"):
        AutoMessage("x", "winback", "t")
    with pytest.raises(OccasionError, match="not in the list"):
        due_messages(MemberFacts(1, date(2020, 1, 1)),
                     [AutoMessage("o", "occasion", "t", occasion="nope")], date(2026, 1, 1), OCC)
    bad = tmp_path / "o.toml"
    bad.write_text('[[occasion]]\nkey="a"\nname="b"\nmonth=7\nday=31\n', encoding="utf-8")
    with pytest.raises(OccasionError, match="7/31"):
        load_occasions(bad)
    bad.write_text('[[occasion]]\nkey="a"\nname="b"\ndates=["1405/13/01"]\n', encoding="utf-8")
    with pytest.raises(OccasionError, match="Jalali"):
        load_occasions(bad)


def test_tehran_date() -> None:
    assert tehran_date(datetime(2026, 3, 20, 21, 0, tzinfo=UTC)) == date(2026, 3, 21)
    with pytest.raises(ValueError):
        tehran_date(datetime(2026, 3, 20))


def test_gift_is_keyed_with_its_message() -> None:
    from backend.occasions import gift_for

    msg = AutoMessage("birthday", "birthday", "t", gift_credit=50_000, gift_days=14)
    m = MemberFacts(4, date(2024, 1, 1), birthday_jalali=(9, 10))
    [due] = due_messages(m, [msg], J("1405/09/10"), OCC)
    now = datetime(2026, 12, 1, 20, 35, tzinfo=UTC)
    g = gift_for(msg, due, now)
    assert g is not None and g.key == due.idempotency_key + ":gift"
    assert (g.member_id, g.amount, g.expires_at) == (4, 50_000, now + timedelta(days=14))
    assert gift_for(AutoMessage("birthday", "birthday", "t"), due, now) is None
    with pytest.raises(ValueError):
        gift_for(AutoMessage("other", "birthday", "t"), due, now)
    with pytest.raises(OccasionError, match="gift"):
        AutoMessage("x", "birthday", "t", gift_credit=10)
