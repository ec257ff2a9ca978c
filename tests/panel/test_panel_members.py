"""The members pages through Starlette's TestClient, on both engines: search, list, CSV,
the member's page, and every action with its roles, bad input, CSRF and other clubs."""

from __future__ import annotations

import re

import pytest

from backend import store, store_audit, store_members
from tests.panel.world import CARD, OTHER_CARD, PHONE, SCRIPT, TOKEN, World, logged_in


@pytest.mark.parametrize("typed", [PHONE, "۰۹۱۲۱۲۳۴۵۶۷", "+98 912 123 4567", "9121234567",
                                   CARD, "۶۰۳۷ ۹۹۰۰ ۰۰۰۰ ۰۰۰۶"])
def test_search_finds_the_member_by_any_form_of_phone_or_card(world: World, typed: str) -> None:
    with logged_in(world, "ali") as b:
        r = b.get("/members", params={"q": typed}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/members/{world.member_a}"


def test_search_by_code_and_nothing_found(world: World) -> None:
    with logged_in(world, "sara") as b:
        r = b.get("/members", params={"q": world.code_a.lower()}, follow_redirects=False)
        assert r.headers["location"] == f"/members/{world.member_a}"
        page = b.get("/members", params={"q": "09350000000"}).text
    assert 'id="not-found"' in page


def test_the_list_is_per_club_sorted_filtered_and_escaped(world: World) -> None:
    with logged_in(world, "ali") as b:
        page = b.get("/members").text
        assert 'dir="rtl"' in page and SCRIPT not in page and "&lt;script&gt;" in page
        assert "(۲)" in page  # club A has two members; club B's is not counted
        page = b.get("/members", params={"sort": "name", "dir": "asc"}).text
        assert page.index("&lt;script&gt;") > 0
        assert "(۰)" in b.get("/members", params={"tier": "gold"}).text
        assert "(۲)" in b.get("/members", params={"enrolled_from": "۱۴۰۵/۰۸/۰۱"}).text
        assert "(۰)" in b.get("/members", params={"min_spend": "1"}).text
        sorted_page = b.get("/members", params={"sort": "spend", "tier": "bronze"}).text
        assert 'href="?tier=bronze&amp;sort=spend&amp;dir=asc"' in sorted_page
        assert "(۲)" in sorted_page
        bad = b.get("/members", params={"enrolled_from": "1405/13/40"})
    assert bad.status_code == 400 and 'id="e-enrolled_from"' in bad.text


def test_csv_export_full_phones_for_the_owner_masked_for_staff(world: World) -> None:
    with logged_in(world, "ali") as b:
        owner = b.get("/members.csv")
    with logged_in(world, "sara") as b:
        staff = b.get("/members.csv")
    assert owner.headers["content-type"].startswith("text/csv")
    assert owner.text.startswith("\ufeffcode,phone") and PHONE in owner.text
    assert PHONE not in staff.text and "0912*****67" in staff.text
    assert SCRIPT in owner.text  # a CSV is text, not HTML; it starts with "<", no formula


def test_member_page_profile_balance_tier_cards_ledger(world: World) -> None:
    with logged_in(world, "ali") as b:
        page = b.get(f"/members/{world.member_a}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and SCRIPT not in page
    assert re.search(r'id="balance">۱۰۰٬۰۰۰ ', page)
    assert 'id="adjust-form"' in page and 'id="profile-form"' in page
    assert "۶۰۳۷۹۹۰۰۰۰۰۰۰۰۰۶" in page  # the card
    assert "silver" in page  # what remains to the next tier names it
    assert PHONE.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")) in page


def test_staff_sees_a_masked_phone_and_no_owner_forms(world: World) -> None:
    with logged_in(world, "sara") as b:
        page = b.get(f"/members/{world.member_a}").text
    assert 'id="adjust-form"' not in page and 'id="profile-form"' not in page
    assert 'id="card-form"' in page
    assert "۰۹۱۲۱۲۳۴۵۶۷" not in page


def test_owner_adjusts_credit_once_even_when_the_form_is_sent_twice(world: World) -> None:
    with logged_in(world, "ali") as b:
        page = b.get(f"/members/{world.member_a}").text
        form = {"amount": "۲۵۰۰۰", "reason": "جبران خطای صندوق",
                "token": TOKEN.search(page).group(1)}
        first = b.post(f"/members/{world.member_a}/adjust", form)
        second = b.post(f"/members/{world.member_a}/adjust", form)
        shown = b.get(first.headers["location"]).text
        audit = b.get("/audit").text
    assert first.status_code == second.status_code == 303
    assert second.headers["location"].endswith("done=repeated")
    assert world.balance(world.member_a) == 125_000
    assert 'id="notice"' in shown and "جبران خطای صندوق" in shown
    with world.conn() as c:
        rows = store_audit.entries(c, world.club_a)
    assert [e.action for e in rows] == ["member.adjust"]
    assert rows[0].user == "ali" and rows[0].before == {"balance": 100_000}
    assert rows[0].after["balance"] == 125_000
    assert "اصلاح اعتبار" in audit and "ali" in audit


def test_a_debit_beyond_the_balance_and_bad_amounts_change_nothing(world: World) -> None:
    with logged_in(world, "ali") as b:
        page = b.get(f"/members/{world.member_a}").text
        token = TOKEN.search(page).group(1)
        for amount, reason in (("-100001", "x"), ("0", "x"), ("abc", "x"), ("5", ""),
                               ("99999999999999", "x")):
            r = b.post(f"/members/{world.member_a}/adjust",
                       {"amount": amount, "reason": reason, "token": token})
            assert r.status_code == 400, amount
            assert 'class="error"' in r.text and 'id="adjust-form"' in r.text
        no_token = b.post(f"/members/{world.member_a}/adjust", {"amount": "5", "reason": "x"})
    assert no_token.status_code == 400
    assert world.balance(world.member_a) == 100_000 and world.audit_rows() == 0


def test_staff_may_not_adjust_or_edit(world: World) -> None:
    with logged_in(world, "sara") as b:
        for path, form in (("adjust", {"amount": "5", "reason": "x", "token": "t" * 20}),
                           ("profile", {"name": "x", "birthday": ""}),
                           ("consent", {"consent": "on"})):
            r = b.post(f"/members/{world.member_a}/{path}", form)
            assert r.status_code == 403, path
    assert world.balance(world.member_a) == 100_000 and world.audit_rows() == 0


def test_forms_without_the_csrf_token_are_refused(world: World) -> None:
    with logged_in(world, "ali") as b:
        r = b.post(f"/members/{world.member_a}/profile", {"name": "x"}, token=False)
        forged = b.post(f"/members/{world.member_a}/profile",
                        {"name": "x", "csrf_token": "forged"}, token=False)
    assert r.status_code == forged.status_code == 403
    with world.conn() as c:
        assert store_members.member(c, world.club_a, world.member_a).name == SCRIPT


def test_another_clubs_member_answers_404_for_pages_and_actions(world: World) -> None:
    with logged_in(world, "ali") as b:
        assert b.get(f"/members/{world.member_b}").status_code == 404
        assert b.get("/members/999999").status_code == 404
        page = b.get(f"/members/{world.member_a}").text
        token = TOKEN.search(page).group(1)
        r = b.post(f"/members/{world.member_b}/adjust",
                   {"amount": "5", "reason": "x", "token": token})
        assert r.status_code == 404
        assert b.post(f"/members/{world.member_b}/card", {"card": OTHER_CARD}).status_code == 404
        assert b.post(f"/members/{world.member_b}/consent", {"consent": "on"}).status_code == 404
    assert world.balance(world.member_b) == 100_000 and world.audit_rows() == 0


def test_a_provider_sees_the_club_chosen(world: World) -> None:
    with logged_in(world, "boss") as b:
        assert b.get(f"/members/{world.member_b}").status_code == 404  # club A first
        assert "کافه دوم" in b.get("/club").text
        r = b.post("/club", {"club": str(world.club_b)})
        assert r.status_code == 303
        assert b.get(f"/members/{world.member_b}").status_code == 200
        assert b.get(f"/members/{world.member_a}").status_code == 404
        assert b.post("/club", {"club": "999"}).status_code == 404
    with logged_in(world, "ali") as b:
        assert b.get("/club").status_code == 403


def test_staff_links_and_replaces_a_card(world: World) -> None:
    third = "6037990000000022"
    with logged_in(world, "sara") as b:
        bad = b.post(f"/members/{world.member_a}/card", {"card": "6037990000000007"})
        assert bad.status_code == 400 and 'id="e-card"' in bad.text
        taken = b.post(f"/members/{world.member_a}/card", {"card": CARD, "old": ""})
        assert taken.status_code == 303  # linked to this member already: nothing to do
        r = b.post(f"/members/{world.member_a}/card", {"card": OTHER_CARD, "old": CARD})
        assert r.status_code == 303
        again = b.post(f"/members/{world.member_b}/card", {"card": third})
        assert again.status_code == 404
        b.post(f"/members/{world.member_a}/card", {"card": third})
    with world.conn() as c:
        assert store.cards_of(c, world.member_a) == [(CARD, False), (OTHER_CARD, True),
                                                      (third, True)]
        actions = [e.action for e in store_audit.entries(c, world.club_a)]
    assert actions == ["member.card_link", "member.card_replace"]


def test_owner_edits_name_birthday_and_marketing_sms(world: World) -> None:
    with logged_in(world, "ali") as b:
        bad = b.post(f"/members/{world.member_a}/profile",
                     {"name": "مریم", "birthday": "1370/13/01"})
        assert bad.status_code == 400 and 'id="e-birthday"' in bad.text
        r = b.post(f"/members/{world.member_a}/profile",
                   {"name": "مریم", "birthday": "۱۳۷۰/۰۵/۱۲"})
        assert r.status_code == 303
        # consent comes with enrolment (the club's default): off as the member asks, on again
        b.post(f"/members/{world.member_a}/consent", {"consent": "off"})
        b.post(f"/members/{world.member_a}/consent", {"consent": "on"})
        assert b.post(f"/members/{world.member_a}/consent",
                      {"consent": "maybe"}).status_code == 400
        page = b.get(f"/members/{world.member_a}").text
    assert "مریم" in page and "۱۳۷۰/۰۵/۱۲" in page
    with world.conn() as c:
        m = store_members.member(c, world.club_a, world.member_a)
        entries = store_audit.entries(c, world.club_a)
    assert m.name == "مریم" and m.birthday == "1991-08-03" and m.marketing_consent
    assert entries[2].before == {"name": SCRIPT, "birthday": None}
    assert entries[1].after == {"marketing_sms": False}
    assert entries[0].after == {"marketing_sms": True}


def test_pages_need_a_login(world: World) -> None:
    from starlette.testclient import TestClient

    from tests.panel.world import app_for

    with TestClient(app_for(world), base_url="http://127.0.0.1") as c:
        for path in ("/members", f"/members/{world.member_a}", "/offers", "/program",
                     "/users", "/audit", "/members.csv"):
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/login", path


def test_english_switch(world: World) -> None:
    with logged_in(world, "ali") as b:
        b.get("/lang/en")
        page = b.get(f"/members/{world.member_a}").text
    assert 'dir="ltr"' in page and "Adjust credit" in page and "100,000" in page


def test_the_two_ways_of_listing_agree_and_an_export_holds_every_member(world: World) -> None:
    """The list unfiltered and with a filter every member passes (min_spend=0, which
    counts through another index) gives the same rows and count; the export holds all."""
    from datetime import timedelta

    from backend.store import PurchaseRecord, ts
    from backend.store_members import MemberFilter, SortKey
    from tests.panel.world import NOW

    with world.conn() as c, store.transaction(c):
        c.executemany(
            "INSERT INTO members(phone, code, enrolled_at, tier, club_id) VALUES (?, ?, ?, ?, ?)",
            [(f"0915{i:07d}", f"Z{i:06d}", ts(NOW - timedelta(minutes=i)), "bronze",
              world.club_a) for i in range(1200)])
        for i, (mid, amount) in enumerate(((world.member_a, 5_000), (world.member_a, 7_000))):
            store.insert_purchase(c, PurchaseRecord(
                key=f"T0000001:p{i}", member_id=mid, terminal_id="T0000001", quote_id=None,
                amount=amount, gross=amount, approved=True, redeemed=0, earned=0, recovered=0,
                earn_lot=None, occurred_at=ts(NOW) - i))
    with world.conn() as c:
        fast = store_members.list_members(c, world.club_a, MemberFilter(), limit=5000)
        slow = store_members.list_members(c, world.club_a, MemberFilter(min_spend=0),
                                          limit=5000)
        by_name = store_members.list_members(
            c, world.club_a, MemberFilter(sort=SortKey.NAME, descending=False), limit=3).rows
    assert fast.total == slow.total == 1202 and fast.rows == slow.rows
    fast = fast.rows
    [a] = [r for r in fast if r.id == world.member_a]
    assert a.visits == 2 and a.spend == 12_000 and a.last_visit is not None
    assert by_name[0].name == SCRIPT
    with logged_in(world, "ali") as b:
        csv_text = b.get("/members.csv").text
    assert len(csv_text.strip().splitlines()) == 1 + 1202


def test_staff_enrol_a_member_with_welcome_credit_and_sms(world: World) -> None:
    from backend.program import Program

    with logged_in(world, "sara", Program(welcome_credit=5_000)) as b:
        bad = b.post("/members/enrol", {"phone": "0912", "name": "", "referrer": ""})
        assert bad.status_code == 400 and 'id="e-phone"' in bad.text
        r = b.post("/members/enrol", {"phone": "۰۹۳۵ ۱۱۱ ۲۲۳۳", "name": "<i>نو</i>",
                                      "referrer": PHONE})
        assert r.status_code == 303 and r.headers["location"].endswith("done=enrolled")
        page = b.get(r.headers["location"]).text
        again = b.post("/members/enrol", {"phone": "09351112233", "name": "", "referrer": ""})
        elsewhere = b.post("/members/enrol", {"phone": PHONE, "name": "", "referrer": ""})
    assert again.headers["location"] == r.headers["location"].replace("enrolled", "exists")
    assert elsewhere.headers["location"] == f"/members/{world.member_a}?done=exists"
    assert "&lt;i&gt;نو&lt;/i&gt;" in page and "۵٬۰۰۰" in page
    member_id = int(r.headers["location"].split("/")[2].split("?")[0])
    with world.conn() as c:
        m = store_members.member(c, world.club_a, member_id)
        sms = c.execute("SELECT phone, kind, club_id FROM sms_outbox").fetchall()
        [entry] = store_audit.entries(c, world.club_a)
    assert m.phone == "09351112233" and m.referrer_id == world.member_a and m.name == "<i>نو</i>"
    assert [tuple(s) for s in sms] == [("09351112233", "welcome", world.club_a)]
    assert entry.action == "member.enrol" and entry.user == "sara"


def test_a_referral_rows_phone_is_masked_for_staff(world: World) -> None:
    from datetime import timedelta

    from backend import ledger
    from tests.panel.world import NOW

    with world.conn() as c, store.transaction(c):
        ledger.credit(c, world.member_a, "referral", 50_000, "referral:x", earned_at=NOW,
                      expires_at=NOW + timedelta(days=30), ref="09130000000")
    with logged_in(world, "sara") as b:
        staff = b.get(f"/members/{world.member_a}").text
    with logged_in(world, "ali") as b:
        owner = b.get(f"/members/{world.member_a}").text
    assert "09130000000" not in staff and "0913*****00" in staff
    assert "09130000000" in owner
