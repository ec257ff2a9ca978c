"""The member's page in a real headless Chromium at a phone's 390x844: the link from the
welcome SMS in the outbox, the balance read, the birthday changed, credit transferred with
the code read from the outbox as the phone shows it; right to left, nothing overflowing."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from backend import ledger, store, store_members, store_registry
from backend.handling import enroll
from backend.program import Program
from backend.sms.senders import otp_token
from protocols.persian import persian_digits
from tests.backend.engines import sqlite_only
from tests.panel.browser import SIZES, check_layout, chromium, serve_in_thread
from tests.panel.world import NOW, World, app_for

NEW_PHONE = "09157654321"


@sqlite_only
def test_member_opens_the_sms_link_reads_the_balance_sets_the_birthday_transfers(
        world: World, tmp_path: Path) -> None:
    with serve_in_thread(app_for(world)) as base, chromium(tmp_path / "profile") as driver:
        with world.conn() as conn, store.transaction(conn):
            store_registry.set_public_url(conn, world.club_a, base)
            m = enroll.enrol_new(conn, club_id=world.club_a, phone=NEW_PHONE, referrer_id=None,
                                 program=Program(), shop_name="نانوایی", now=NOW)
            ledger.credit(conn, m.id, "earn", 250_000, f"earn:browser:{m.id}", earned_at=NOW,
                          expires_at=NOW.replace(year=2027), ref="test")
            (text,) = conn.execute("SELECT text FROM sms_outbox WHERE kind = 'welcome' AND "
                                   "phone = ?", (NEW_PHONE,)).fetchone()
        link = text.rsplit("\n", 1)[1]
        assert link.startswith(f"{base}/m/")
        wait = WebDriverWait(driver, 60)
        driver.set_window_size(*SIZES["phone"])
        driver.get(link)
        wait.until(ec.presence_of_element_located((By.ID, "balance-amount")))
        assert driver.find_element(By.ID, "balance-amount").text == "۲۵۰٬۰۰۰"
        check_layout(driver, "member", tmp_path)
        driver.set_window_size(*SIZES["phone"])
        field = driver.find_element(By.ID, "f-birthday")
        field.clear()
        field.send_keys("۱۳۷۰/۰۵/۱۲")
        driver.find_element(By.ID, "save-profile").click()
        wait.until(ec.presence_of_element_located((By.ID, "notice")))
        assert driver.find_element(By.ID, "f-birthday").get_attribute("value") == "۱۳۷۰/۰۵/۱۲"
        assert driver.execute_script("return document.referrer") == ""
        check_layout(driver, "member-saved", tmp_path)
        driver.set_window_size(*SIZES["phone"])

        driver.find_element(By.ID, "f-to_phone").send_keys("۰۹۳۵۰۰۰۰۰۷۷")
        driver.find_element(By.ID, "f-amount").send_keys("۳۰۰۰۰")
        driver.find_element(By.ID, "transfer-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "code-form")))
        assert persian_digits("09350000077") in driver.find_element(By.ID, "transfer-what").text
        check_layout(driver, "member-transfer-code", tmp_path)
        driver.set_window_size(*SIZES["phone"])
        with world.conn() as conn:
            (sms,) = conn.execute("SELECT text FROM sms_outbox WHERE phone = ? AND kind = 'otp'",
                                  (NEW_PHONE,)).fetchone()
        driver.find_element(By.ID, "f-code").send_keys(persian_digits(otp_token(sms)))
        driver.find_element(By.ID, "code-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "transfer-done")))
        assert "۳۰٬۰۰۰" in driver.find_element(By.ID, "notice").text
        check_layout(driver, "member-transfer-done", tmp_path)
        driver.set_window_size(*SIZES["phone"])
        driver.find_element(By.ID, "back").click()
        wait.until(ec.presence_of_element_located((By.ID, "balance-amount")))
        assert driver.find_element(By.ID, "balance-amount").text == "۲۲۰٬۰۰۰"
        driver.save_screenshot(str(tmp_path / "member-after-transfer-phone.png"))
    with world.conn() as conn:
        saved = store_members.member(conn, world.club_a, m.id)
        receiver = store.member_by_phone(conn, "09350000077", club_id=world.club_a)
        assert receiver is not None and ledger.balance(conn, receiver.id) >= 30_000
        ledger.check(conn, m.id)
    assert saved is not None and saved.birthday == "1991-08-03"
    assert world.balance(m.id) == 220_000
