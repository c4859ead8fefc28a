"""Headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) against live Gunicorn.

The driver is Debian's own chromedriver, built from the same source as the browser, so the two
never drift apart; Selenium is told both paths and never downloads a browser or a driver.
Without them (a machine where scripts/setup.sh could not install them) every browser test is
skipped with one line saying so. Screenshots go to reports/browser/ (git-ignored).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "reports" / "browser"
# The flags issue 13 asks for, plus: audio may start without a click (the test clicks anyway) and
# a fake microphone answers getUserMedia.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (scripts/setup.sh dev)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} is missing (apt-get install {package}; scripts/setup.sh dev does it where it can)"
    return None


MISSING = _missing()
_skipped: list[str] = []


def pytest_collection_modifyitems(config, items) -> None:
    if MISSING is None:
        return
    marker = pytest.mark.skip(reason=f"browser tests skipped: {MISSING}")
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(marker)
            _skipped.append(item.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    if _skipped:
        terminalreporter.write_line(f"browser tests skipped ({len(_skipped)}): {MISSING}")


class Browser:
    """A Selenium Chrome session with the network and console logs kept across reads."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.requests: list[str] = []  # every URL the page asked for
        self.console: list[dict[str, Any]] = []

    def collect_logs(self) -> None:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
        self.console.extend(self.driver.get_log("browser"))

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")  # fresh --user-data-dir for each run
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2200"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
