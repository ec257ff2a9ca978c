"""A member transfers credit from their own page in a real headless Chromium at 390x844:
the form, the code read from the SMS outbox as the phone shows it, done, the new balance;
right to left and nothing overflowing at both sizes."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from backend import store, store_member_tokens
from backend.sms.senders import otp_token
from protocols.persian import persian_digits
from tests.panel.browser import SIZES, WAIT_S, check_layout, chromium, serve_in_thread
from tests.panel.world import NOW, PHONE, app_for, make_world


def test_transfer_credit_on_a_phone(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    store.connect(db).close()
    world = make_world(str(db))
    with world.conn() as c, store.transaction(c):
        token = store_member_tokens.issue(c, world.member_a, world.club_a, NOW)
    with serve_in_thread(app_for(world)) as base, chromium(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, WAIT_S)
        driver.get(f"{base}/m/{token}")
        wait.until(ec.presence_of_element_located((By.ID, "transfer-form")))
        check_layout(driver, "self-page", tmp_path)
        driver.set_window_size(*SIZES["phone"])
        driver.find_element(By.ID, "f-to_phone").send_keys("۰۹۳۵۰۰۰۰۰۷۷")
        driver.find_element(By.ID, "f-amount").send_keys("۳۰۰۰۰")
        driver.find_element(By.ID, "transfer-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "code-form")))
        assert persian_digits("09350000077") in driver.find_element(By.ID, "transfer-what").text
        check_layout(driver, "self-transfer-code", tmp_path)
        driver.set_window_size(*SIZES["phone"])
        with world.conn() as c:
            sms = c.execute("SELECT text FROM sms_outbox WHERE phone = ? AND kind = 'otp'",
                            (PHONE,)).fetchone()[0]
        driver.find_element(By.ID, "f-code").send_keys(persian_digits(otp_token(sms)))
        driver.find_element(By.ID, "code-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "transfer-done")))
        assert "۳۰٬۰۰۰" in driver.find_element(By.ID, "notice").text
        check_layout(driver, "self-transfer-done", tmp_path)
        driver.set_window_size(*SIZES["phone"])
        driver.find_element(By.ID, "back").click()
        wait.until(ec.presence_of_element_located((By.ID, "balance-amount")))
        assert driver.find_element(By.ID, "balance-amount").text == "۷۰٬۰۰۰"
        driver.save_screenshot(str(tmp_path / "self-after-transfer-phone.png"))
    assert world.balance(world.member_a) == 70_000
