"""The dashboard in headless Chromium, served by ``aana dashboard``, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from aana.configs.db import DbSettings
from aana.sdk import AanaSDK
from aana.storage.models import WorkerEntity
from aana.storage.models.task import Status
from aana.storage.repository.task import TaskRepository
from aana.storage.session import get_session
from tests.helpers import REPO_ROOT, backdate, environment

pytestmark = pytest.mark.browser

SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(2)>"


@pytest.fixture
def aana_app(db: DbSettings) -> AanaSDK:
    return AanaSDK(name="browser-test", migrations_path=None)


def set_status(task_id: str, status: Status, result: object = None) -> None:
    with get_session() as session:
        TaskRepository(session).update_status(task_id, status, result=result)


def shown_counts(browser: webdriver.Chrome) -> dict[str, int]:
    cells = browser.find_elements(By.CSS_SELECTOR, "#count-all td[data-status]")
    return {cell.get_attribute("data-status") or "": int(cell.text) for cell in cells}


def assert_no_alert(browser: webdriver.Chrome) -> None:
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.dismiss()


def test_page__counts_match_the_database(
    browser: webdriver.Chrome, dashboard: str, aana_app: AanaSDK
) -> None:
    ids = aana_app.defer_many("echo", [{"n": n} for n in range(4)])
    aana_app.defer("resize", {})
    set_status(ids[0], Status.COMPLETED)
    set_status(ids[1], Status.FAILED, {"error": "ValueError", "message": "bad input"})
    set_status(ids[2], Status.RUNNING)
    browser.get(dashboard)
    with get_session() as session:
        counts = TaskRepository(session).count()
    assert shown_counts(browser) == counts
    assert browser.find_element(By.ID, "failures").text.count("ValueError") == 1
    assert ids[2] in browser.find_element(By.ID, "active").text


def wait(browser: webdriver.Chrome, seconds: float) -> WebDriverWait[webdriver.Chrome]:
    """A wait that looks again when the page replaced an element it was reading.

    A form posted (retry) loads a new page, and the panels' refresh replaces their
    content: an element found a moment before is then stale, which is not a failure.
    """
    return WebDriverWait(browser, seconds, ignored_exceptions=(StaleElementReferenceException,))


def test_task_deferred_elsewhere__appears_without_reloading(
    browser: webdriver.Chrome, dashboard: str, db: DbSettings
) -> None:
    browser.get(dashboard)
    assert shown_counts(browser)["total"] == 0
    browser.execute_script("window.loadedOnce = 'yes';")  # lost if the page reloads
    deferred = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tests.browser.browser_app import app; print(app.defer('from-elsewhere', {}))",
        ],
        cwd=REPO_ROOT,
        env=environment(db),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    task_id = deferred.stdout.strip()
    wait(browser, 20).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, f'#recent tr[data-task-id="{task_id}"]')
    )
    # Counts are read at most every 2 s (counting reads the whole table): soon, too.
    wait(browser, 20).until(lambda b: shown_counts(b)["total"] == 1)
    assert browser.execute_script("return window.loadedOnce;") == "yes"


def test_retry_button__changes_a_failed_task_status(
    browser: webdriver.Chrome, dashboard: str, aana_app: AanaSDK
) -> None:
    task_id = aana_app.defer("echo", {"n": 1})
    set_status(task_id, Status.FAILED, {"error": "RuntimeError", "message": "boom"})
    browser.get(dashboard)
    # Followed by URL, not clicked: the panels' refresh may replace the link meanwhile.
    link = browser.find_element(By.CSS_SELECTOR, f'#failures a[href="tasks/{task_id}"]')
    browser.get(link.get_attribute("href") or "")
    shown_status = browser.find_element(By.ID, "task-status")
    assert shown_status.text == "failed"
    browser.find_element(By.ID, "retry").click()
    # The form's answer is a new page: read the status only once the old one is gone
    # (read while the page changes, the element is stale or "not in the document").
    wait(browser, 10).until(staleness_of(shown_status))
    wait(browser, 10).until(lambda b: b.find_element(By.ID, "task-status").text == "created")
    assert aana_app.get_task(task_id).status == Status.CREATED
    assert browser.current_url == f"{dashboard}tasks/{task_id}"


def test_script_in_stored_values__shown_as_text_never_run(
    browser: webdriver.Chrome, dashboard: str, aana_app: AanaSDK
) -> None:
    task_id = aana_app.defer(SCRIPT, {"text": SCRIPT, "image": IMAGE})
    failure = {"error": SCRIPT, "message": IMAGE, "traceback": f"Traceback\n  {SCRIPT}"}
    set_status(task_id, Status.FAILED, failure)
    browser.get(dashboard)
    assert_no_alert(browser)
    failures = browser.find_element(By.ID, "failures").text
    assert SCRIPT in failures and IMAGE in failures  # as text
    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img")
    browser.get(f"{dashboard}tasks/{task_id}")
    assert_no_alert(browser)
    assert browser.find_element(By.ID, "task-endpoint").text == SCRIPT
    assert SCRIPT in browser.find_element(By.ID, "task-data").text
    traceback = browser.find_element(By.ID, "task-traceback").get_attribute("textContent")
    assert traceback is not None and SCRIPT in traceback
    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img")


def test_screenshot__of_the_main_page(
    browser: webdriver.Chrome, dashboard: str, aana_app: AanaSDK, tmp_path: Path
) -> None:
    """Saves the README's picture when AANA_DASHBOARD_SCREENSHOT names where."""
    ids = aana_app.defer_many("transcribe", [{"video": f"v{n}.mp4"} for n in range(30)])
    aana_app.defer_many("caption", [{"video": f"v{n}.mp4"} for n in range(12)])
    for n, task_id in enumerate(ids[:18]):
        set_status(task_id, Status.COMPLETED, {"words": n})
    set_status(ids[18], Status.FAILED, {"error": "TimeoutError", "message": "took over 600 s"})
    set_status(ids[19], Status.ASSIGNED)
    set_status(ids[19], Status.RUNNING, result=None)
    with get_session() as session:  # spread over the hour, for the chart
        session.add_all(
            WorkerEntity(
                id=f"gpu-{n}:{4100 + n}:0",
                hostname=f"gpu-{n}",
                pid=4100 + n,
                concurrency=4,
                running=1 - n,
                processed=9 * (n + 1),
            )
            for n in range(2)
        )
        session.commit()
        for n, task_id in enumerate(ids[:19]):
            backdate(session, [task_id], 60 + n * 173, columns=("completed_at",))
    browser.get(dashboard)
    target = Path(os.environ.get("AANA_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(target))
    assert target.stat().st_size > 10_000
