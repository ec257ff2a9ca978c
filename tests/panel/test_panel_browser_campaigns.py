"""The campaigns page in a real headless Chromium: the owner writes a campaign for a
segment, sees the estimate (members, SMS parts, cost), sends it, and watches it go out
(pending, then sent once the SMS worker has run) on the list; right to left and nothing
overflowing. Screenshots are saved under the test's temporary folder."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from backend import segment_job, store
from backend.sms import SmsWorker
from backend.sms.senders import FileSender
from tests.panel.browser import WAIT_S, check_layout, chromium, log_in, serve_in_thread
from tests.panel.world import NOW, PASSWORD, app_for, make_world

TEXT = "{name}، این هفته ۱۰٪ تخفیف برای شما که مدتی است سر نزده‌اید؛ " + "س" * 40


def cell(driver, name: str) -> str:  # type: ignore[no-untyped-def]
    """The newest campaign's count `name` (sent, pending), whatever the layout shows."""
    row = driver.find_element(By.CSS_SELECTOR, "#campaigns tbody tr")
    return str(row.find_element(By.CLASS_NAME, name).get_attribute("textContent")).strip()


def test_write_estimate_send_and_watch_a_campaign_go_out(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    store.connect(db).close()
    world = make_world(str(db))
    with world.conn() as c:
        with store.transaction(c):
            c.execute("UPDATE members SET marketing_consent = 1 WHERE club_id = ?",
                      (world.club_a,))
        segment_job.run(c, NOW, club_id=world.club_a, force=True)
        [segment] = {r[0] for r in c.execute(
            "SELECT s.segment FROM member_segments s JOIN members m ON m.id = s.member_id"
            " WHERE m.club_id = ?", (world.club_a,))}
    with serve_in_thread(app_for(world)) as base, chromium(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, WAIT_S)
        log_in(driver, base, "ali", PASSWORD)

        driver.get(f"{base}/campaigns")
        wait.until(ec.presence_of_element_located((By.ID, "campaign-form")))
        check_layout(driver, "campaigns", tmp_path)
        driver.find_element(By.ID, "f-text").send_keys(TEXT)
        driver.find_element(By.ID, "f-segment").send_keys(segment)
        driver.find_element(By.ID, "f-holdout").send_keys("۰")
        driver.find_element(By.ID, "f-price").send_keys("۱۰۰۰")
        driver.find_element(By.ID, "camp-estimate").click()
        wait.until(ec.presence_of_element_located((By.ID, "estimate")))
        assert driver.find_element(By.ID, "est-reach").text == "۲"
        parts = driver.find_element(By.ID, "est-parts").text
        assert parts == "۴", parts  # two members, two UCS-2 parts each
        assert driver.find_element(By.ID, "est-cost").text.startswith("۴٬۰۰۰")
        check_layout(driver, "campaign-estimate", tmp_path)
        # the form kept what was typed: send it as it stands
        driver.find_element(By.ID, "camp-send").click()
        wait.until(ec.presence_of_element_located((By.ID, "notice")))
        assert cell(driver, "pending") == "۲" and cell(driver, "sent") == "۰"

        worker = SmsWorker(str(db), FileSender(tmp_path / "sms.jsonl"))
        try:
            assert worker.run_once(NOW) == 2  # Tehran noon: no quiet hours
        finally:
            worker.stop()

        def gone_out(d) -> bool:  # type: ignore[no-untyped-def]
            d.refresh()
            return cell(d, "sent") == "۲" and cell(d, "pending") == "۰"

        wait.until(gone_out)
        check_layout(driver, "campaign-sent", tmp_path)
    sent = (tmp_path / "sms.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(sent) == 2 and all("مدتی است" in line for line in sent)
