"""The dashboard, terminals and SMS pages in a real headless Chromium: log in as the owner,
read the dashboard's figures and compare them with the database, right to left, nothing
overflows at 1280x800 or 390x844; screenshots under the test's folder.

`PANEL_SCREENSHOT=docs/panel-dashboard.png` also keeps the desktop dashboard's picture
there (how the README's screenshot was made)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from backend import report, store_dashboard
from backend.daily_rules import day_number
from tests.backend.engines import register_test_terminals
from tests.panel.browser import WAIT_S, check_layout, chromium, log_in, serve_in_thread
from tests.panel.test_panel_dashboard import number, play, today_bounds
from tests.panel.world import NOW, PASSWORD, World, app_for, make_world


@pytest.fixture
def sqlite_world(tmp_path: Path) -> World:
    db = tmp_path / "loyalty.db"
    register_test_terminals(db)
    world = make_world(str(db))
    play(world)
    return world


def test_dashboard_in_chromium(sqlite_world: World, tmp_path: Path) -> None:
    app = app_for(sqlite_world)
    shots = tmp_path / "shots"
    shots.mkdir()
    with serve_in_thread(app) as base, chromium(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, WAIT_S)

        log_in(driver, base, "ali", PASSWORD)
        driver.get(f"{base}/dashboard?period=today")
        wait.until(ec.presence_of_element_located((By.ID, "figures")))
        shown = {key: number(driver.find_element(By.ID, f"fig-{key}").text)
                 for key in ("purchases", "sales", "new", "returning", "buyers", "members")}
        since, until = today_bounds()
        day = day_number(NOW.date())
        with sqlite_world.conn() as conn:
            f = report.summary(conn, since=since, until=until, club_id=sqlite_world.club_a) \
                if "club_id" in report.summary.__code__.co_varnames else None
            rows = store_dashboard.days(conn, sqlite_world.club_a, day, day)
            b = store_dashboard.buyers_from_purchases(conn, sqlite_world.club_a,
                                                  int(since.timestamp()),
                                                  int(until.timestamp()))
            settled, sales = conn.execute(
                "SELECT COUNT(*), SUM(p.amount) FROM purchases p JOIN members m "
                "ON m.id = p.member_id WHERE m.club_id = ? AND p.approved = 1 "
                "AND p.reversed = 0 AND p.occurred_at >= ? AND p.occurred_at < ?",
                (sqlite_world.club_a, int(since.timestamp()), int(until.timestamp()))).fetchone()
            members = conn.execute("SELECT COUNT(*) FROM members WHERE club_id = ?",
                                   (sqlite_world.club_a,)).fetchone()[0]
        assert shown["purchases"] == settled == sum(r.settled for r in rows)
        assert shown["sales"] == sales
        assert shown["buyers"] == b.buyers and shown["returning"] == b.returning
        assert shown["members"] == members
        if f is not None:
            assert shown["purchases"] == f.purchases and shown["sales"] == f.sales
        assert driver.find_elements(By.CSS_SELECTOR, "#chart-heat svg rect.cell")
        check_layout(driver, "dashboard", shots)
        driver.get(f"{base}/dashboard?period=last30")
        wait.until(ec.presence_of_element_located((By.ID, "figures")))
        check_layout(driver, "dashboard-30", shots)
        driver.get(f"{base}/terminals")
        wait.until(ec.presence_of_element_located((By.ID, "terminals")))
        check_layout(driver, "terminals", shots)
        driver.get(f"{base}/sms")
        wait.until(ec.presence_of_element_located((By.ID, "sms-counts")))
        check_layout(driver, "sms", shots)
        driver.find_element(By.CSS_SELECTOR, "form.retry button").click()
        wait.until(ec.presence_of_element_located((By.ID, "retried")))
        driver.set_window_size(1280, 800)
        driver.get(f"{base}/dashboard?period=today")
        wait.until(ec.presence_of_element_located((By.ID, "figures")))
        small = shots / "readme.png"
        driver.save_screenshot(str(small))
        driver.find_element(By.ID, "logout").click()
        wait.until(ec.presence_of_element_located((By.ID, "login-form")))
    assert len(list(shots.glob("*.png"))) == 9
    if target := os.environ.get("PANEL_SCREENSHOT"):
        shutil.copyfile(small, target)
