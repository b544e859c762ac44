"""Browser fixtures: headless Chromium through Selenium, and ``aana dashboard`` running.

The browser tests skip when Chromium or chromedriver is missing, unless
``AANA_TEST_REQUIRE_BROWSER=1`` (set by CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from aana.configs.db import DbSettings
from tests.api.conftest import free_port
from tests.helpers import REPO_ROOT, environment, wait_until

REQUIRE_BROWSER = os.environ.get("AANA_TEST_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("AANA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("AANA_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = f"{' and '.join(missing)} not found: apt-get install -y chromium chromium-driver"
        if REQUIRE_BROWSER:
            pytest.fail(f"the browser tests are required (AANA_TEST_REQUIRE_BROWSER=1): {message}")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1400",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def dashboard(db: DbSettings) -> Iterator[str]:
    """The URL of ``aana dashboard`` serving the test database, in a subprocess."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aana.cli",
            "--log-level",
            "WARNING",
            "dashboard",
            "tests.browser.browser_app:app",
            "--port",
            str(port),
        ],
        cwd=REPO_ROOT,
        env=environment(db),
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        ready = f"{url}static/dashboard.css"  # no database read: counts are not cached yet
        wait_until(lambda: server.poll() is not None or _serving(ready), timeout=30, interval=0.1)
        assert server.poll() is None, f"aana dashboard exited with {server.returncode}"
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
