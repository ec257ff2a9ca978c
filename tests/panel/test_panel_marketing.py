"""The automatic messages and marketing settings page through the TestClient, on both
engines: the owner saves a message and the settings (audited), staff reads them and is
refused changes, a bad template or setting comes back with the error beside its field
and changes nothing, a form without its CSRF token is refused, and another club's owner
cannot switch off this club's message."""

from __future__ import annotations

from backend import store_automsg, store_marketing
from tests.panel.world import World, logged_in

WINBACK = {"enabled": "on", "template": "{name}، دلمان برایتان تنگ شده: {gift} ریال هدیه",
           "days": "۴۵", "offset": "", "segment": "at_risk", "gift": "50000",
           "gift_days": "14"}
SETTINGS = {"quiet": "۲۲:۰۰-۰۸:۳۰", "daily_limit": "40", "consent": "no", "sms_price": "۳۵۰"}


def _messages(world: World, club_id: int) -> dict[str, tuple[bool, str, int, str | None]]:
    with world.conn() as c:
        return {s.message.key: (s.enabled, s.message.template, s.message.days,
                                s.message.segment)
                for s in store_automsg.messages(c, club_id)}


def _settings(world: World, club_id: int) -> tuple[str, str, int | None, bool]:
    with world.conn() as c:
        s = store_marketing.settings(c, club_id)
        return (f"{s.quiet_start:%H:%M}", f"{s.quiet_end:%H:%M}", s.club_daily,
                store_marketing.consent_at_enrolment(c, club_id))


def test_the_owner_saves_a_message_and_the_settings_staff_reads_them(world: World) -> None:
    with logged_in(world, "ali") as b:
        page = b.get("/marketing").text
        assert 'id="msg-birthday"' in page and 'id="msg-occasion-yalda"' in page
        assert 'id="form-winback"' in page and 'id="settings-form"' in page
        r = b.post("/marketing/messages/winback", WINBACK)
        assert r.status_code == 303 and r.headers["location"].startswith("/marketing?done=saved")
        r = b.post("/marketing/messages/occasion:yalda",
                   {**WINBACK, "days": "", "offset": "-1", "segment": "",
                    "template": "{occasion} مبارک، {shop}"})
        assert r.status_code == 303
        r = b.post("/marketing/settings", SETTINGS)
        assert r.status_code == 303 and r.headers["location"] == "/marketing?done=settings"
        page = b.get("/marketing").text
        assert 'id="off-winback"' in page
    assert _messages(world, world.club_a) == {
        "winback": (True, WINBACK["template"], 45, "at_risk"),
        "occasion:yalda": (True, "{occasion} مبارک، {shop}", 0, None)}
    assert _settings(world, world.club_a) == ("22:00", "08:30", 40, False)
    with world.conn() as c:  # the campaigns' estimate takes this price when given none
        assert (store_marketing.sms_price(c, world.club_a),
                store_marketing.sms_price(c, world.club_b)) == (350, 0)
    assert _messages(world, world.club_b) == {}
    assert _settings(world, world.club_b) == ("21:00", "09:00", None, True)
    assert world.audit_rows() == 3
    with logged_in(world, "sara") as staff:  # staff reads, changes nothing
        page = staff.get("/marketing")
        assert page.status_code == 200
        assert "at_risk" in page.text and "form-winback" not in page.text
        assert "settings-form" not in page.text and 'id="mk-limit">۴۰<' in page.text
        assert staff.post("/marketing/messages/winback",
                          {**WINBACK, "enabled": "off"}).status_code == 403
        assert staff.post("/marketing/settings", {**SETTINGS, "consent": "yes"}
                          ).status_code == 403
        assert staff.post("/marketing/messages/winback/off").status_code == 403
    with logged_in(world, "bita") as other:  # another club's owner
        assert other.post("/marketing/messages/winback/off").status_code == 404
        assert "at_risk" not in other.get("/marketing").text
    assert _messages(world, world.club_a)["winback"][0] is True
    with logged_in(world, "ali") as b:
        r = b.post("/marketing/messages/winback/off")
        assert r.status_code == 303 and r.headers["location"] == "/marketing?done=off"
    assert _messages(world, world.club_a)["winback"][0] is False
    assert world.audit_rows() == 4


def test_bad_input_comes_back_beside_its_field_and_changes_nothing(world: World) -> None:
    with logged_in(world, "ali") as b:
        assert b.post("/marketing/messages/winback", WINBACK).status_code == 303
        before = (_messages(world, world.club_a), _settings(world, world.club_a),
                  world.audit_rows())
        cases = {
            "template": {**WINBACK, "template": "سلام {foo}"},  # unknown placeholder
            "segment": {**WINBACK, "segment": "vip"},
            "days": {**WINBACK, "days": "0"},  # win-back needs its days
            "gift": {**WINBACK, "gift_days": ""},  # a gift needs its days
            "offset": {**WINBACK, "offset": "x"},
        }
        for name, form in cases.items():
            r = b.post("/marketing/messages/winback", form)
            assert r.status_code == 400 and f'id="e-winback-{name}"' in r.text, name
        r = b.post("/marketing/messages/winback", {**WINBACK, "template": "{foo} {name}"})
        assert "foo" in r.text.split('id="e-winback-template"', 1)[1][:300]
        # the tier up knows {tier}, the birthday does not
        assert b.post("/marketing/messages/birthday",
                      {**WINBACK, "days": "", "template": "{tier}"}).status_code == 400
        assert b.post("/marketing/messages/nosuch", WINBACK).status_code == 404
        assert b.post("/marketing/messages/occasion:nosuch", WINBACK).status_code == 404
        for name, form in {"quiet": {**SETTINGS, "quiet": "25:00-08:00"},
                           "daily_limit": {**SETTINGS, "daily_limit": "-3"},
                           "consent": {**SETTINGS, "consent": "maybe"},
                           "sms_price": {**SETTINGS, "sms_price": "-1"}}.items():
            r = b.post("/marketing/settings", form)
            assert r.status_code == 400 and f'id="e-{name}"' in r.text, name
        assert b.post("/marketing/settings", SETTINGS, token=False).status_code == 403
        assert b.post("/marketing/messages/winback", {**WINBACK, "days": "9"},
                      token=False).status_code == 403
    assert (_messages(world, world.club_a), _settings(world, world.club_a),
            world.audit_rows()) == before
