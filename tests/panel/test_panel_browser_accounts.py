"""The members and offers pages in a real headless Chromium (Debian's, via Selenium): log
in, find a member by a phone typed in Persian digits, adjust their credit, add an offer
through the form, log out; right to left and nothing overflowing at 1280x800 and 390x844.
Screenshots of every page seen are saved under the test's temporary folder."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from backend import store
from tests.panel.browser import WAIT_S, check_layout, chromium, log_in, serve_in_thread
from tests.panel.world import PASSWORD, app_for, make_world


def test_adjust_credit_and_add_an_offer_in_a_browser(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    store.connect(db).close()
    world = make_world(str(db))
    with serve_in_thread(app_for(world)) as base, chromium(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, WAIT_S)

        log_in(driver, base, "ali", PASSWORD)

        driver.get(f"{base}/members")
        wait.until(ec.presence_of_element_located((By.ID, "member-search")))
        check_layout(driver, "members", tmp_path)
        driver.find_element(By.ID, "f-q").send_keys("۰۹۱۲ ۱۲۳ ۴۵۶۷")
        driver.find_element(By.ID, "search-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "adjust-form")))
        assert driver.find_element(By.ID, "member-name").text == "<script>alert(1)</script>"
        assert driver.find_element(By.ID, "balance").text.startswith("۱۰۰٬۰۰۰")
        check_layout(driver, "member", tmp_path)

        driver.find_element(By.ID, "f-amount").send_keys("۲۵۰۰۰")
        driver.find_element(By.ID, "f-reason").send_keys("هدیه تولد")
        driver.find_element(By.ID, "adjust-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "notice")))
        assert driver.find_element(By.ID, "balance").text.startswith("۱۲۵٬۰۰۰")
        assert "هدیه تولد" in driver.find_element(By.ID, "ledger").text
        assert world.balance(world.member_a) == 125_000
        driver.save_screenshot(str(tmp_path / "member-adjusted.png"))

        driver.get(f"{base}/offers")
        wait.until(ec.presence_of_element_located((By.ID, "offer-form")))
        driver.find_element(By.ID, "f-name").send_keys("پنجشنبه‌های طلایی")
        driver.find_element(By.ID, "f-value").send_keys("۵")
        driver.find_element(By.ID, "f-until").send_keys("۱۴۰۵/۱۰/۳۰")
        driver.find_element(By.CSS_SELECTOR, 'input[name="wd_thu"]').click()
        Select(driver.find_element(By.ID, "f-target")).select_by_value("tier:silver")
        driver.find_element(By.ID, "offer-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "notice")))
        assert "پنجشنبه‌های طلایی" in driver.find_element(By.ID, "offers").text
        check_layout(driver, "offers", tmp_path)
        with world.conn() as c:
            [offer] = store.offers(c, club_id=world.club_a)
        assert offer.percent == 5 and offer.target == "tier:silver" and offer.weekdays == {3}

        driver.find_element(By.ID, "logout").click()
        wait.until(ec.presence_of_element_located((By.ID, "login-form")))
        driver.get(f"{base}/members")
        wait.until(ec.presence_of_element_located((By.ID, "login-form")))
    assert len(list(tmp_path.glob("*.png"))) == 7
