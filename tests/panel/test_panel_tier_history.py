"""The member's tier history on the member's page, on both engines: Jalali dates, Persian
tier names, the cause; another member's changes are not shown."""

from __future__ import annotations

from datetime import timedelta

from backend import store, store_tiers
from backend.program import Program
from tests.panel.world import NOW, World, logged_in


def test_member_page_shows_the_tier_history_newest_first(world: World) -> None:
    with logged_in(world, "ali") as b:
        page = b.get(f"/members/{world.member_a}").text
        assert 'id="tier-history-none"' in page and 'id="tier-history"' not in page
        with world.conn() as conn, store.transaction(conn):
            for member, club, to, src, cause, days in (
                (world.member_a, world.club_a, "silver", "bronze", "purchase", 10),  # 08/30
                (world.member_a, world.club_a, "bronze", "silver", "reversal", 0),  # 09/10
                (world.member_b, world.club_b, "gold", "bronze", "purchase", 0),  # club B's
            ):
                store_tiers.record(conn, store_tiers.change(
                    Program(), member_id=member, club_id=club, from_tier=src,
                    to_tier=to, at=NOW - timedelta(days=days), cause=cause))
        page = b.get(f"/members/{world.member_a}").text
    table = page[page.index('id="tier-history"'):page.index("</table>", page.index(
        'id="tier-history"'))]
    rows = table.split("<tr class=")[1:]
    assert len(rows) == 2 and "طلایی" not in table
    assert rows[0].startswith('"down"') and "۱۴۰۵/۰۹/۱۰" in rows[0]
    assert "برگشت خرید" in rows[0] and rows[0].index("نقره‌ای") < rows[0].index("برنزی")
    assert rows[1].startswith('"up"') and "۱۴۰۵/۰۸/۳۰" in rows[1] and "ارتقا" in rows[1]
    assert ">خرید<" in rows[1]
