"""The panel in a real headless Chromium: log in, right to left, nothing overflows, log out,
the English switch."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from panel.app import PanelSettings, create_app
from tests.panel.browser import OVERFLOW_JS, WAIT_S, check_layout, chromium, serve_in_thread
from tests.panel.conftest import PASSWORDS


def test_login_rtl_no_overflow_logout(tmp_path: Path, users) -> None:
    app = create_app(PanelSettings(db="browser.db"), users)
    with serve_in_thread(app) as base, chromium(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, WAIT_S)

        driver.get(f"{base}/login")
        wait.until(ec.presence_of_element_located((By.ID, "login-form")))
        check_layout(driver, "login", tmp_path, font=True)
        driver.find_element(By.ID, "f-name").send_keys("ali")
        driver.find_element(By.ID, "f-password").send_keys(PASSWORDS["ali"])
        driver.find_element(By.ID, "login-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "user-name")))
        assert driver.find_element(By.ID, "user-name").text == "ali"
        assert driver.find_element(By.ID, "user-role").text == "مالک"
        check_layout(driver, "home", tmp_path, font=True)
        driver.get(f"{base}/about")
        wait.until(ec.presence_of_element_located((By.ID, "assets")))
        assert driver.execute_script("return typeof htmx") == "object"  # served by the panel
        check_layout(driver, "about", tmp_path, font=True)
        # the check can fail: a box too narrow for its word is reported
        driver.execute_script(
            "const d = document.createElement('div'); d.id = 'too-wide';"
            "d.style.width = '40px'; d.textContent = 'x'.repeat(200);"
            "document.querySelector('main').append(d);")
        assert any("div#too-wide" in line for line in driver.execute_script(OVERFLOW_JS))
        driver.find_element(By.ID, "logout").click()
        wait.until(ec.presence_of_element_located((By.ID, "login-form")))
        driver.get(f"{base}/")
        wait.until(ec.presence_of_element_located((By.ID, "login-form")))
        assert driver.current_url == f"{base}/login"
        driver.find_element(By.CSS_SELECTOR, 'a[href^="/lang/en"]').click()  # English switch
        wait.until(lambda d: d.execute_script("return document.documentElement.dir") == "ltr")
        assert driver.find_element(By.ID, "login-submit").text == "Log in"
    assert len(list(tmp_path.glob("*.png"))) == 6
