"""The members' segments in the panel, on both engines: the member's page shows the
segment and its scores, the dashboard the members per segment beside a month ago, with
its CSV; another club's run is not shown."""

from __future__ import annotations

from datetime import timedelta

from backend import store, store_segments
from backend.segments import MemberSegment, Scores
from panel.periods import tehran_day
from tests.panel.world import NOW, World, logged_in


def test_member_page_shows_the_segment_once_computed(world: World) -> None:
    with logged_in(world, "ali") as b:
        page = b.get(f"/members/{world.member_a}").text
        assert "هنوز محاسبه نشده" in page and 'id="segment-scores"' not in page
        with world.conn() as conn, store.transaction(conn):
            store_segments.compute(conn, world.club_a, tehran_day(NOW))
        page = b.get(f"/members/{world.member_a}").text
    assert 'id="segment">تازه‌وارد</dd>' in page  # enrolled 20 days ago
    assert 'id="segment-scores">ماندگاری ' in page and "(محاسبه ۱۴۰۵/" in page


def test_dashboard_chart_members_per_segment_and_change(world: World) -> None:
    today = tehran_day(NOW)
    with logged_in(world, "ali") as b:
        page = b.get("/dashboard?period=today").text
        assert "اعضا در هر دسته رفتاری" in page and "هنوز محاسبه نشده است" in page
        with world.conn() as conn:
            with store.transaction(conn):  # a month ago: one member sleeping (made up)
                store_segments.write(conn, world.club_a, today - timedelta(days=31), [
                    MemberSegment(world.member_a, Scores(1, 1, 1, 1), "sleeping")])
            with store.transaction(conn):
                store_segments.compute(conn, world.club_a, today)
        page = b.get("/dashboard?period=today").text
        csv = b.get("/dashboard/segments.csv?period=week")
    assert "تغییر: تازه‌وارد +۲، فعال ۰" in page and "خواب -۱" in page
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.lstrip("\ufeff").splitlines()
    assert lines[0].split(",")[1:] == ["اکنون", "یک ماه پیش"]
    rows = {line.split(",")[0]: line.split(",")[1:] for line in lines[1:]}
    assert rows["تازه‌وارد"] == ["2", "0"] and rows["خواب"] == ["0", "1"]
    with logged_in(world, "bita") as b:  # club B: never computed
        assert "هنوز محاسبه نشده است" in b.get("/dashboard?period=today").text
