"""The offers and program pages through the TestClient, on both engines."""

from __future__ import annotations

import re
from datetime import timedelta

from backend import store, store_audit, store_offers, store_registry
from backend.program import Offer
from backend.store import PurchaseRecord
from tests.panel.world import NOW, World, logged_in

FIELD = re.compile(r'name="([a-z_0-9]+)" [^>]*?value="([^"]*)"')
GOOD = {"name": "جمعه‌های <b>شاد</b>", "kind": "percent", "value": "۵", "start": "",
        "until": "۱۴۰۵/۱۰/۳۰", "hour_from": "۱۰", "hour_to": "14", "min_purchase": "۵۰۰۰۰۰",
        "target": "everyone", "visits": "", "wd_fri": "on", "wd_thu": "on"}


def offers_of(world: World, club_id: int) -> list[Offer]:
    with world.conn() as c:
        return store.offers(c, club_id=club_id, include_ended=True)


def test_owner_adds_an_offer_through_the_form(world: World) -> None:
    with logged_in(world, "ali") as b:
        r = b.post("/offers", GOOD)
        assert r.status_code == 303
        page = b.get("/offers").text
    [o] = offers_of(world, world.club_a)
    assert o.percent == 5 and o.hours == (10, 14) and o.min_purchase == 500_000
    assert o.weekdays == {3, 4} and o.until.isoformat() == "2027-01-20"
    assert o.club_id == world.club_a
    assert offers_of(world, world.club_b) == []
    assert "&lt;b&gt;شاد&lt;/b&gt;" in page and "در جریان" in page and "پنجشنبه" in page
    with world.conn() as c:
        [entry] = store_audit.entries(c, world.club_a)
    assert entry.action == "offer.add" and entry.after["percent"] == 5


def test_bad_offers_come_back_with_the_error_beside_the_field(world: World) -> None:
    cases = {
        "until": {**GOOD, "until": "1405/09/01"},  # past
        "value": {**GOOD, "value": "120"},  # over 100 %
        "hour_to": {**GOOD, "hour_from": "14", "hour_to": "10"},
        "start": {**GOOD, "start": "1405/11/01"},  # after until
        "visits": {**GOOD, "target": "visits"},
        "target": {**GOOD, "target": "tier:nonesuch"},
        "name": {**GOOD, "name": ""},
        "kind": {**GOOD, "kind": "free"},
    }
    with logged_in(world, "ali") as b:
        for field, form in cases.items():
            r = b.post("/offers", form)
            assert r.status_code == 400, field
            assert f'id="e-{field}"' in r.text, field
            assert 'id="offer-form"' in r.text
    assert offers_of(world, world.club_a) == [] and world.audit_rows() == 0


def test_amount_visits_and_scheduled_offers(world: World) -> None:
    with logged_in(world, "ali") as b:
        assert b.post("/offers", {**GOOD, "kind": "amount", "value": "۲۰٬۰۰۰",
                                  "target": "visits", "visits": "3",
                                  "start": "1405/10/01"}).status_code == 303
        assert b.post("/offers", {**GOOD, "target": "tier:silver"}).status_code == 303
        page = b.get("/offers").text
    amount, tier = sorted(offers_of(world, world.club_a), key=lambda o: o.id)
    assert amount.amount == 20_000 and amount.target == "visits:3"
    assert tier.target == "tier:silver"
    assert "زمان‌بندی‌شده" in page


def test_end_an_offer_and_another_clubs_offer_is_404(world: World) -> None:
    with world.conn() as c, store.transaction(c):
        mine = store.add_offer(c, Offer("a", until=NOW.date() + timedelta(days=9), amount=5,
                                        club_id=world.club_a), NOW)
        theirs = store.add_offer(c, Offer("b", until=NOW.date() + timedelta(days=9), amount=5,
                                          club_id=world.club_b), NOW)
    with logged_in(world, "ali") as b:
        assert b.post(f"/offers/{theirs}/end").status_code == 404
        assert b.post(f"/offers/{mine}/end").status_code == 303
        assert "پایان‌یافته" in b.get("/offers").text
    with logged_in(world, "sara") as b:
        assert "offer-form" not in b.get("/offers").text
        assert b.post("/offers", GOOD).status_code == 403
        assert b.post(f"/offers/{theirs}/end").status_code == 403
    ended = {o.id: o.ended for o in offers_of(world, world.club_a) + offers_of(world, world.club_b)}
    assert ended == {mine: True, theirs: False}


def test_the_offer_effect_counts_purchases_not_reversed(world: World) -> None:
    when = int((NOW - timedelta(hours=1)).timestamp())
    with world.conn() as c, store.transaction(c):
        oid = store.add_offer(c, Offer("a", until=NOW.date(), amount=7_000,
                                       club_id=world.club_a), NOW)
        for i, reversed_ in enumerate((False, False, True)):
            key = f"T0000001:{i}"
            store.insert_purchase(c, PurchaseRecord(
                key=key, member_id=world.member_a, terminal_id="T0000001", quote_id=None,
                amount=1_000_000, gross=1_000_000, approved=True, redeemed=0, earned=37_000,
                recovered=0, earn_lot=None, occurred_at=when, reversed=reversed_))
            store_offers.record_uses(c, key, [(oid, 7_000)])
    with world.conn() as c:
        assert store_offers.effects(c, world.club_a) == {oid: store_offers.OfferEffect(2, 14_000)}
        assert store_offers.effects(c, world.club_b) == {}
    with logged_in(world, "ali") as b:
        row = b.get("/offers").text.split(f'id="offer-{oid}"')[1].split("</tr>")[0]
    assert re.search(r'<td data-label="[^"]+">۲</td>', row) and "۱۴٬۰۰۰" in row


def test_program_page_states_the_rules_and_saves_a_new_version(world: World) -> None:
    with logged_in(world, "ali") as b:
        page = b.get("/program").text
        assert "رده silver: از ۲۰٬۰۰۰٬۰۰۰ ریال خرید در ۹۰ روز؛ ۵٪ بازگشت اعتبار" in page
        form = dict(FIELD.findall(page))
        form.pop("csrf_token", None)
        form.update({"credit_days": "۱۸۰", "tier1_percent": "6", "transfer_max": "۲۰۰۰۰۰۰"})
        r = b.post("/program", form)
        assert r.status_code == 303 and r.headers["location"].endswith("done=saved")
        page = b.get("/program").text
        same = b.post("/program", {**form})
    assert "۶٪ بازگشت" in page and "۱۸۰ روز پس از کسب" in page and "نسخه ۱" in page
    assert same.headers["location"].endswith("done=same")
    with world.conn() as c:
        [v] = store_registry.program_history(c, world.club_a)
        assert store_registry.program_history(c, world.club_b) == []
        [entry] = store_audit.entries(c, world.club_a)
    assert "تا ۲٬۰۰۰٬۰۰۰ ریال در هر انتقال" in page
    assert v.author == "panel:ali" and "credit_days = 180" in v.body
    assert "[transfer]" in v.body and "max = 2000000" in v.body
    assert entry.action == "program.edit" and entry.after["version"] == 1


def test_bad_programs_change_nothing(world: World) -> None:
    with logged_in(world, "ali") as b:
        page = b.get("/program").text
        form = dict(FIELD.findall(page))
        form.pop("csrf_token", None)
        for change, field in (({"credit_days": "x"}, "credit_days"),
                              ({"tier0_min": "100"}, "tier0_name"),  # lowest tier not at 0
                              ({"tier1_name": "bronze"}, "tier0_name"),  # two of one name
                              ({"tier2_percent": ""}, "tier2_percent"),
                              ({"max_redeem_percent": "101"}, "max_redeem_percent"),
                              ({"transfer_min": "6000000"}, "transfer_min"),  # > the most
                              ({"transfer_enabled": "2"}, "transfer_enabled")):
            r = b.post("/program", {**form, **change})
            assert r.status_code == 400, change
            assert f'id="e-{field}"' in r.text, change
    with logged_in(world, "sara") as b:
        assert 'id="program-form"' not in b.get("/program").text
        assert b.post("/program", form).status_code == 403
    with world.conn() as c:
        assert store_registry.program_history(c, world.club_a) == []
    assert world.audit_rows() == 0




def test_an_offer_for_some_branches_only(world: World) -> None:
    with world.conn() as c, store.transaction(c):
        main = store_registry.find_branch(c, world.club_a, "main")
        north = store_registry.add_branch(c, world.club_a, "شمال", NOW)
        theirs = store_registry.add_branch(c, world.club_b, "دیگر", NOW)
    with logged_in(world, "ali") as b:
        assert 'name="br_' in b.get("/offers").text
        assert b.post("/offers", {**GOOD, f"br_{north.id}": "on",
                                  f"br_{theirs.id}": "on"}).status_code == 303
        assert b.post("/offers", {**GOOD, f"br_{north.id}": "on",
                                  f"br_{main.id}": "on"}).status_code == 303
        page = b.get("/offers").text
    some, every = sorted(offers_of(world, world.club_a), key=lambda o: o.id)
    assert some.branches == {north.id} and every.branches == frozenset()
    assert "شمال" in page and "همه شعبه‌ها" in page


def test_saving_the_form_keeps_the_settings_it_does_not_show(world: World) -> None:
    """The gift card settings are not in the program form: a save from the panel keeps
    the club's values instead of putting the defaults back."""
    from dataclasses import replace

    from backend.config import program_toml
    from backend.program import Program

    with world.conn() as c, store.transaction(c):
        base = replace(Program(), gift_max_percent=40.0, gift_earn=True)
        store_registry.add_program(c, world.club_a, program_toml(base), "test", NOW)
    with logged_in(world, "ali") as b:
        form = dict(FIELD.findall(b.get("/program").text))
        form.pop("csrf_token", None)
        form.update({"credit_days": "۱۸۰"})
        r = b.post("/program", form)
        assert r.status_code == 303 and r.headers["location"].endswith("done=saved")
    with world.conn() as c:
        latest = store_registry.latest_program(c, world.club_a)
    assert latest is not None and "credit_days = 180" in latest.body
    assert "gift_max_percent = 40" in latest.body and "gift_earn = true" in latest.body
