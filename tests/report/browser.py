"""Headless Chromium through selenium and Debian's chromedriver, for the report's browser tests.

Nothing is downloaded: the browser and its driver come from the system (`apt-get install
chromium chromium-driver`, which `.ci/run` does when they are missing), and the driver's path
is given explicitly so selenium never looks for one online.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,2400",
)


def find_browser() -> tuple[str, str] | str:
    """(browser, driver) paths, or the reason there is none."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = next((found for name in DRIVERS if (found := shutil.which(name))), None)
    if browser is None or driver is None:
        missing = [
            name for name, path in (("chromium", browser), ("chromium-driver", driver)) if path is None
        ]
        return (
            f"no browser to test in: {', '.join(missing)} not installed "
            "(apt-get install chromium chromium-driver; .ci/run does it when it can)"
        )
    return browser, driver


@contextmanager
def chromium(browser: str, driver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="vlmrl-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        session.set_page_load_timeout(60)
        yield session
    finally:
        session.quit()
        shutil.rmtree(profile, ignore_errors=True)


def load(session, page: Path) -> list[dict]:
    """Open a page from file:// and return the console's errors (JavaScript errors, failed loads)."""
    session.get(page.resolve().as_uri())
    session.execute_script("return document.readyState")
    # Images load lazily; scrolling through the page makes every one of them load (or fail).
    session.execute_script(
        "document.querySelectorAll('img').forEach(function (i) { i.loading = 'eager'; });"
        "window.scrollTo(0, document.body.scrollHeight);"
    )
    session.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "var pending = Array.from(document.images).filter(function (i) { return !i.complete; });"
        "if (!pending.length) { done(); return; }"
        "var left = pending.length;"
        "pending.forEach(function (i) { var f = function () { if (--left === 0) { done(); } };"
        "  i.addEventListener('load', f); i.addEventListener('error', f); });"
        "setTimeout(done, 10000);"
    )
    return [entry for entry in session.get_log("browser") if entry.get("level") == "SEVERE"]
