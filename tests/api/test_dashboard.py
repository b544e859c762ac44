"""The dashboard's pages through the TestClient, on both backends."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from aana.api import dashboard_app, dashboard_router
from aana.api.dashboard import CSRF_COOKIE
from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.sdk import AanaSDK
from aana.storage.models import WorkerEntity
from aana.storage.models.task import Status
from aana.storage.repository.task import TaskRepository
from aana.storage.session import get_session
from tests.helpers import aana, backdate, wait_until

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def csrf(client: TestClient) -> str:
    client.get("/dashboard/")
    token = client.cookies.get(CSRF_COOKIE)
    assert token
    return token


def cell(page: str, row_id: str, status: str) -> int:
    row = re.search(rf'<tr class="all" id="{row_id}">(.*?)</tr>', page, re.S)
    assert row, page
    value = re.search(rf'data-status="{status}">(\d+)<', row.group(1))
    assert value
    return int(value.group(1))


def test_main_page__counts_match_the_database(client: TestClient, aana_app: AanaSDK) -> None:
    ids = aana_app.defer_many("echo", [{"n": n} for n in range(3)])
    aana_app.defer("other", {})
    with get_session() as session:
        TaskRepository(session).update_status(ids[0], Status.COMPLETED)
        TaskRepository(session).update_status(ids[1], Status.FAILED, result={"error": "E"})
        counts = TaskRepository(session).count()
    page = client.get("/dashboard/")
    assert page.status_code == 200
    for status in ("created", "completed", "failed", "total"):
        assert cell(page.text, "count-all", status) == counts[status]
    assert "Last hour: 1 completed, 1 failed" in page.text
    assert 'src="static/dashboard.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    panels = client.get("/dashboard/panels")
    assert panels.status_code == 200 and "<html" not in panels.text
    assert cell(panels.text, "count-all", "total") == 4


def test_static_files__served_with_their_types(client: TestClient) -> None:
    script = client.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and "text/javascript" in script.headers["content-type"]
    assert "fetch(" in script.text
    assert client.get("/dashboard/static/dashboard.css").status_code == 200
    assert client.get("/dashboard/static/..%2Fdashboard.py").status_code == 404


def test_script_in_endpoint_data_result_and_traceback__shown_escaped(
    client: TestClient, aana_app: AanaSDK
) -> None:
    task_id = aana_app.defer(SCRIPT, {"text": SCRIPT})
    running = aana_app.defer(SCRIPT, {})
    failure = {"error": SCRIPT, "message": SCRIPT, "traceback": f"Traceback: {SCRIPT}"}
    with get_session() as session:
        TaskRepository(session).update_status(task_id, Status.FAILED, result=failure)
        TaskRepository(session).update_status(running, Status.RUNNING)
    for url in ("/dashboard/", "/dashboard/panels", f"/dashboard/tasks/{task_id}"):
        page = client.get(url).text
        assert SCRIPT not in page
        assert "<script>alert" not in page
        assert ESCAPED in page or "&lt;script&gt;" in page
    detail = client.get(f"/dashboard/tasks/{task_id}").text
    assert f"Traceback: {ESCAPED}" in detail
    assert f'<dd id="task-endpoint">{ESCAPED}</dd>' in detail


def test_retry_form__needs_the_csrf_token(client: TestClient, aana_app: AanaSDK) -> None:
    task_id = aana_app.defer("echo", {})
    with get_session() as session:
        TaskRepository(session).update_status(task_id, Status.FAILED, result={"error": "E"})
    token = csrf(client)
    missing = client.post(f"/dashboard/tasks/{task_id}/retry", data={})
    forged = client.post(f"/dashboard/tasks/{task_id}/retry", data={"csrf_token": "x" + token})
    assert missing.status_code == forged.status_code == 403
    assert "CSRF" in forged.text
    assert aana_app.get_task(task_id).status == Status.FAILED
    # The token without the cookie (another site's form) is refused too.
    bare = TestClient(client.app)
    forged_site = bare.post(f"/dashboard/tasks/{task_id}/retry", data={"csrf_token": token})
    assert forged_site.status_code == 403
    assert aana_app.get_task(task_id).status == Status.FAILED
    done = client.post(
        f"/dashboard/tasks/{task_id}/retry", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"../{task_id}"
    assert aana_app.get_task(task_id).status == Status.CREATED
    page = client.post(f"/dashboard/tasks/{task_id}/retry", data={"csrf_token": token})
    assert page.url.path == f"/dashboard/tasks/{task_id}"
    assert '<dd id="task-status" class="status created">created' in page.text


def test_cancel_form__cancels_then_shows_the_conflict(
    client: TestClient, aana_app: AanaSDK
) -> None:
    task_id = aana_app.defer("echo", {})
    token = csrf(client)
    url = f"/dashboard/tasks/{task_id}/cancel"
    assert client.post(url, data={"csrf_token": token}).status_code == 200
    assert aana_app.get_task(task_id).status == Status.CANCELLED
    again = client.post(url, data={"csrf_token": token})
    assert again.status_code == 409 and "already cancelled" in again.text


def test_task_page__unknown_task_is_404_and_gets_change_nothing(
    client: TestClient, aana_app: AanaSDK
) -> None:
    assert client.get(f"/dashboard/tasks/{uuid.uuid4()}").status_code == 404
    task_id = aana_app.defer("echo", {})
    assert client.get(f"/dashboard/tasks/{task_id}/cancel").status_code == 405
    assert aana_app.get_task(task_id).status == Status.CREATED


def test_broken_database__the_page_shows_an_error(tmp_path: object) -> None:
    db = DbSettings(datastore_config={"path": str(tmp_path)})  # a folder: misconfigured
    app = AanaSDK(name="down", settings=Settings(db_config=db), migrations_path=None)
    with TestClient(dashboard_app(app)) as client:
        page = client.get("/")
        panels = client.get("/panels")
    assert page.status_code == panels.status_code == 503
    assert 'id="page-error"' in page.text and "unavailable" in page.text
    assert "folder" not in page.text


@pytest.mark.postgresql
def test_slow_database__the_page_answers_503_in_time(db: DbSettings, aana_app: AanaSDK) -> None:
    if db.datastore_type != "postgresql":
        pytest.skip("a reader waits for a lock only on PostgreSQL (SQLite readers never wait)")
    api = FastAPI()
    api.include_router(dashboard_router(aana_app, timeout=0.5))
    with db.get_engine().connect() as locker, TestClient(api) as client:
        locker.execute(text("LOCK TABLE tasks, task_counts IN ACCESS EXCLUSIVE MODE"))
        page = client.get("/")
        locker.rollback()
        wait_until(lambda: db.get_engine().pool.checkedout() == 1)  # type: ignore[attr-defined]
    assert page.status_code == 503 and "too slow" in page.text


def test_dashboard_app__serves_the_dashboard_api_and_metrics(aana_app: AanaSDK) -> None:
    with TestClient(dashboard_app(aana_app)) as client:
        assert client.get("/").status_code == 200
        assert client.post("/api/tasks/", json={"endpoint": "echo"}).status_code == 201
        assert client.get("/api/tasks/counts").json()["total"] == 1
        assert "aana_tasks" in client.get("/metrics").text
        assert client.get("/api/openapi.json").status_code == 200


def test_cli__dashboard_command_binds_to_localhost_by_default(db: DbSettings) -> None:
    result = aana("dashboard", "--help", db=db)
    assert "APP_PATH" in result.stdout
    assert "127.0.0.1" in result.stdout and "8000" in result.stdout


def test_workers_panel__live_and_silent_workers_escaped(client: TestClient) -> None:
    with get_session() as session:
        session.add_all(
            [
                WorkerEntity(id="a:1:x", hostname="gpu-1", pid=41, concurrency=4, running=3),
                WorkerEntity(id="b:2:y", hostname=SCRIPT, pid=42, concurrency=1),
            ]
        )
        session.commit()
        backdate(session, ["b:2:y"], 120, columns=("last_heartbeat",), entity=WorkerEntity)
    page = client.get("/dashboard/panels").text
    live = re.search(r'<tr data-worker-id="a:1:x" class="alive">(.*?)</tr>', page, re.S)
    assert live and "gpu-1" in live.group(1) and "<td>3</td>" in live.group(1)
    silent = re.search(r'<tr data-worker-id="b:2:y" class="silent">(.*?)</tr>', page, re.S)
    assert silent and "(silent)" in silent.group(1) and ESCAPED in silent.group(1)
