"""A real browser for the panel's tests: Debian's headless Chromium through Selenium.

Never a downloaded browser: the binary and the driver are the Debian packages'
(`chromium`, `chromium-driver`, installed by scripts/setup.sh), with a fresh profile per
test and Chromium's own network chatter switched off.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: how long a wait for a page event may take before the test fails: a bound, not a pace
#: (a loaded 2-core machine renders a chart page in seconds)
WAIT_S = 60
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage")

#: Every visible element whose content is wider than its box (and does not scroll), or
#: that sticks out of the viewport (other than inside a box that scrolls sideways); and
#: whether the page itself is wider than the window.
OVERFLOW_JS = """
const vw = document.documentElement.clientWidth;
// inside a box that scrolls sideways an element is reached by scrolling, not cut off
const inScrollBox = (el) => {
  for (let p = el.parentElement; p && p !== document.body; p = p.parentElement)
    if (['auto', 'scroll'].includes(getComputedStyle(p).overflowX)) return true;
  return false;
};
const bad = [];
if (document.documentElement.scrollWidth > vw + 1)
  bad.push('page ' + document.documentElement.scrollWidth + ' > ' + vw);
for (const el of document.body.querySelectorAll('*')) {
  const cs = getComputedStyle(el);
  if (cs.display === 'none' || cs.visibility === 'hidden') continue;
  const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
               (el.className && typeof el.className === 'string' ? '.' + el.className : '');
  const r = el.getBoundingClientRect();
  if (r.width > 0 && (r.left < -1 || r.right > vw + 1) && !inScrollBox(el))
    bad.push(name + ' outside the viewport ' + r.left + '..' + r.right);
  if (['auto', 'scroll'].includes(cs.overflowX)) continue;
  if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
    bad.push(name + ' content ' + el.scrollWidth + ' > box ' + el.clientWidth);
}
return bad;
"""

#: the two layouts every page is checked at: a desktop and a phone
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def check_layout(driver: webdriver.Chrome, page: str, shots: Path, *, font: bool = False) -> None:
    """The page right-to-left with nothing overflowing its box at each of SIZES (with the
    Persian font loaded when `font`), a screenshot of each under `shots`; the window left
    at the desktop size."""
    for size, (w, h) in SIZES.items():
        driver.set_window_size(w, h)
        # the viewport, not the window, must be w wide for the check to mean it
        inner = driver.execute_script("return window.innerWidth")
        if inner != w:
            driver.set_window_size(w + (w - inner), h)
        assert driver.execute_script("return document.documentElement.dir") == "rtl"
        if font:
            assert driver.execute_script("return document.fonts.check('16px Vazirmatn')")
        overflow = driver.execute_script(OVERFLOW_JS)
        driver.save_screenshot(str(shots / f"{page}-{size}.png"))
        assert overflow == [], f"{page} at {w}x{h}: {overflow}"
    driver.set_window_size(*SIZES["desktop"])


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """The app under uvicorn on a free loopback port (port 0); yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="panel-uvicorn", daemon=True)
    thread.start()
    try:
        while not server.started:  # uvicorn sets it once its socket listens
            if not thread.is_alive():
                raise RuntimeError("uvicorn stopped before it listened")
            thread.join(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def log_in(driver: webdriver.Chrome, base: str, name: str, password: str) -> None:
    """Through the login form, as a person does; returns once the logged-in page is up."""
    wait = WebDriverWait(driver, WAIT_S)
    driver.get(f"{base}/login")
    wait.until(ec.presence_of_element_located((By.ID, "login-form")))
    driver.find_element(By.ID, "f-name").send_keys(name)
    driver.find_element(By.ID, "f-password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    wait.until(ec.presence_of_element_located((By.ID, "logout")))
