"""The members list's pager in a real headless Chromium: sorted by spend, "next", "last"
and "previous" are followed as a person clicks them, each page shows its number and the
rows the database orders there, right to left with nothing overflowing at both sizes."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from backend import store
from panel.pages.members import PAGE
from tests.panel.browser import WAIT_S, check_layout, chromium, log_in, serve_in_thread
from tests.panel.world import NOW, PASSWORD, app_for, make_world

EXTRA = 2 * PAGE + 8  # with the world's two: three pages, the last of ten rows


def test_follow_the_members_pager_in_a_browser(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    store.connect(db).close()
    world = make_world(str(db))
    with world.conn() as c, store.transaction(c):
        c.executemany(
            "INSERT INTO members(phone, code, enrolled_at, tier, club_id, spend, visits) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(f"0918{i:07d}", f"R{i:07d}", store.ts(NOW), "bronze", world.club_a,
              (i % 13) * 10_000, 1) for i in range(EXTRA)])
        order = [int(i) for (i,) in c.execute(
            "SELECT id FROM members WHERE club_id = ? ORDER BY spend DESC, id DESC",
            (world.club_a,))]

    def click(element_id: str) -> tuple[str, list[int]]:
        """Click the link, wait for the next page, and read its number and rows."""
        old = driver.find_element(By.ID, "member-filter")
        driver.find_element(By.ID, element_id).click()
        wait.until(ec.staleness_of(old))
        wait.until(ec.presence_of_element_located((By.ID, "pager")))
        links = driver.find_elements(By.CSS_SELECTOR, "#members tbody a")
        ids = [int(a.get_attribute("href").rsplit("/", 1)[1]) for a in links]
        return driver.find_element(By.ID, "pager").text.split(" ")[1], ids

    with serve_in_thread(app_for(world)) as base, chromium(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, WAIT_S)
        log_in(driver, base, "ali", PASSWORD)
        driver.get(f"{base}/members")
        wait.until(ec.presence_of_element_located((By.ID, "sort-spend")))
        assert click("sort-spend") == ("۱", order[:PAGE])
        assert click("next-page") == ("۲", order[PAGE:2 * PAGE])
        check_layout(driver, "members-page-2", tmp_path)
        assert click("last-page") == ("۳", order[2 * PAGE:])
        assert not driver.find_elements(By.ID, "next-page")
        assert click("previous-page") == ("۲", order[PAGE:2 * PAGE])
        assert click("first-page") == ("۱", order[:PAGE])
        assert not driver.find_elements(By.ID, "previous-page")
    assert len(list(tmp_path.glob("*.png"))) == 2
