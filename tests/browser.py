"""A headless Chromium driven by Selenium, for the tests of pages (the report, the service's page).

Debian's ``chromium`` and ``chromium-driver`` (``./run test`` installs them where it can). Where they or
``selenium`` are missing the browser tests skip, naming what is missing; on CI (``CI=true``) they fail
instead, so that a CI run never passes without them. Use the module-scoped fixture (one browser for all
tests of a module: it starts in ~1 s)::

    from browser import browser  # noqa: F401 (a pytest fixture)

    def test_page(browser, tmp_path):
        browser.get(page_path.as_uri())
"""
import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 900)


def missing():
    """Why no browser can start here (one line), or ``None``."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(os.path.basename(path))):
            return f"{path} is missing (apt-get install chromium chromium-driver, or ./run test as root)"
    return None


def start_chromium():
    """A headless Chromium WebDriver (``WINDOW`` pixels); the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--autoplay-policy=no-user-gesture-required",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # for requested_urls
    # An explicit driver: Selenium would otherwise ask Selenium Manager, which downloads one.
    driver_path = CHROMEDRIVER if os.path.exists(CHROMEDRIVER) else shutil.which("chromedriver")
    return webdriver.Chrome(service=Service(driver_path), options=options)


def requested_urls(driver):
    """The URLs the browser requested since the last call (Chrome's performance log: resource timing
    leaves out file: URLs): page, scripts, images, media, fetches."""
    import json
    messages = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [m["params"]["request"]["url"] for m in messages if m["method"] == "Network.requestWillBeSent"]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium WebDriver shared by a module's tests; skips (fails on CI) without one."""
    reason = missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI: browser tests cannot run: {reason}")
        pytest.skip(reason)
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()
