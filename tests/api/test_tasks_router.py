"""The task API on both backends: every route, every error code, the OpenAPI schema."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from sqlalchemy import text

from aana.api import tasks_router
from aana.api.calls import UNAVAILABLE, http_error
from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.exceptions.db import ConstraintViolationException
from aana.sdk import AanaSDK
from aana.storage.models.task import Status
from aana.storage.repository.task import TaskRepository
from aana.storage.session import get_session
from tests.api.conftest import free_port
from tests.helpers import wait_until


def defer(client: TestClient, **body: object) -> str:
    response = client.post("/tasks/", json={"endpoint": "echo", "data": {"n": 1}, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def set_status(task_id: str, status: Status, result: object = None) -> None:
    with get_session() as session:
        TaskRepository(session).update_status(task_id, status, result=result)


def test_defer__201_with_the_id_and_the_task_stored(client: TestClient, aana_app: AanaSDK) -> None:
    task_id = defer(client, data={"text": "hi"}, priority=3, user_id="ann")
    task = aana_app.get_task(task_id)
    assert (task.endpoint, task.data, task.priority, task.user_id) == (
        "echo",
        {"text": "hi"},
        3,
        "ann",
    )
    assert task.status == Status.CREATED


def test_defer__scheduling_and_dedupe_options(client: TestClient, aana_app: AanaSDK) -> None:
    later = defer(client, schedule_in=3600)
    task = aana_app.get_task(later)
    assert (task.scheduled_at - task.created_at).total_seconds() == pytest.approx(3600, abs=5)
    at = defer(client, schedule_at="2030-01-01T00:00:00+00:00")
    assert aana_app.get_task(at).scheduled_at.year == 2030
    first = defer(client, dedupe_key="once")
    assert defer(client, dedupe_key="once") == first


@pytest.mark.parametrize(
    "body",
    [
        {},  # no endpoint
        {"endpoint": ""},
        {"endpoint": "echo", "priority": "high"},
        {"endpoint": "echo", "priority": 2**40},
        {"endpoint": "echo", "schedule_in": -1},
        {"endpoint": "echo", "schedule_at": "2030-01-01T00:00:00"},  # naive
        {"endpoint": "echo", "schedule_in": 5, "schedule_at": "2030-01-01T00:00:00Z"},
        {"endpoint": "echo", "unknown_option": 1},
        {"endpoint": "echo", "dedupe_key": ""},
    ],
)
def test_defer__bad_input_is_422_and_nothing_stored(
    client: TestClient, body: dict[str, object]
) -> None:
    response = client.post("/tasks/", json=body)
    assert response.status_code == 422, response.text
    assert client.get("/tasks/counts").json()["total"] == 0


def test_defer__data_json_cannot_store_is_422(client: TestClient) -> None:
    response = client.post(
        "/tasks/",
        content=b'{"endpoint": "echo", "data": {"x": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]
    assert client.get("/tasks/counts").json()["total"] == 0


def test_get__the_task_with_status_progress_result_and_timestamps(client: TestClient) -> None:
    task_id = defer(client)
    set_status(task_id, Status.COMPLETED, result={"answer": 42})
    body = client.get(f"/tasks/{task_id}").json()
    assert body["id"] == task_id
    assert body["status"] == "completed"
    assert body["result"] == {"answer": 42}
    assert body["data"] == {"n": 1}
    assert body["completed_at"] is not None and body["created_at"] is not None


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid", "x" * 64])
def test_get__unknown_or_malformed_id_is_404(client: TestClient, task_id: str) -> None:
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 404
    assert "was found" in response.json()["detail"]


def test_list__filters_page_and_total(client: TestClient) -> None:
    ids = [defer(client, user_id="ann" if n % 2 else "bob") for n in range(5)]
    other = defer(client, endpoint="other")
    set_status(ids[0], Status.FAILED, result={"error": "E"})
    page = client.get("/tasks/", params={"limit": 2}).json()
    assert page["total"] == 6 and len(page["items"]) == 2 and page["limit"] == 2
    assert page["items"][0]["id"] == other  # newest first
    everything = client.get("/tasks/", params={"limit": 500}).json()["items"]
    assert [item["id"] for item in everything] == [other, *reversed(ids)]
    offset = client.get("/tasks/", params={"limit": 2, "offset": 2}).json()["items"]
    assert offset == everything[2:4]
    assert client.get("/tasks/", params={"endpoint": "other"}).json()["total"] == 1
    ann = client.get("/tasks/", params={"user_id": "ann"}).json()
    assert ann["total"] == 2 and {item["user_id"] for item in ann["items"]} == {"ann"}
    failed = client.get("/tasks/", params={"status": "failed"}).json()
    assert [item["id"] for item in failed["items"]] == [ids[0]] and failed["total"] == 1


@pytest.mark.parametrize(
    "params",
    [{"limit": 501}, {"limit": 0}, {"offset": -1}, {"status": "bogus"}, {"limit": "many"}],
)
def test_list__limit_capped_and_bad_filters_are_422(
    client: TestClient, params: dict[str, object]
) -> None:
    assert client.get("/tasks/", params=params).status_code == 422


def test_counts__per_status_and_endpoint(client: TestClient) -> None:
    first = defer(client)
    defer(client)
    defer(client, endpoint="other")
    set_status(first, Status.COMPLETED)
    body = client.get("/tasks/counts").json()
    assert body["total"] == 3
    assert body["by_status"]["created"] == 2 and body["by_status"]["completed"] == 1
    assert body["by_status"]["failed"] == 0
    assert body["by_endpoint"] == {"echo": {"created": 1, "completed": 1}, "other": {"created": 1}}


def test_retry__a_failed_task_goes_back_to_the_queue(client: TestClient) -> None:
    task_id = defer(client)
    set_status(task_id, Status.FAILED, result={"error": "E"})
    response = client.post(f"/tasks/{task_id}/retry")
    assert response.status_code == 200
    assert response.json()["status"] == "created" and response.json()["result"] is None


def test_retry__a_running_task_is_409_and_unchanged(client: TestClient) -> None:
    task_id = defer(client)
    set_status(task_id, Status.RUNNING)
    response = client.post(f"/tasks/{task_id}/retry")
    assert response.status_code == 409
    assert "running" in response.json()["detail"]
    assert client.get(f"/tasks/{task_id}").json()["status"] == "running"


def test_retry_and_cancel__unknown_task_is_404(client: TestClient) -> None:
    for action in ("retry", "cancel"):
        assert client.post(f"/tasks/{uuid.uuid4()}/{action}").status_code == 404


def test_cancel__a_waiting_task_is_cancelled_then_409(client: TestClient) -> None:
    task_id = defer(client)
    response = client.post(f"/tasks/{task_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = client.post(f"/tasks/{task_id}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_state_changes_are_post_only(client: TestClient) -> None:
    task_id = defer(client)
    for action in ("retry", "cancel"):
        assert client.get(f"/tasks/{task_id}/{action}").status_code == 405
    assert client.get(f"/tasks/{task_id}").json()["status"] == "created"


def test_constraint_violation__maps_to_409() -> None:
    error = http_error(ConstraintViolationException("saving failed: unique", "uq_x"))
    assert error is not None and error.status_code == 409


def unreachable_app(backend: str, tmp_path: Path) -> AanaSDK:
    if backend == "postgresql":
        db = DbSettings(
            datastore_type="postgresql",
            datastore_config={
                "host": "127.0.0.1",
                "port": free_port(),  # nothing listens there
                "user": "postgres",
                "password": "s3cret-password",
                "database": "x",
            },
            connection_timeout=2,
        )
    elif backend == "sqlite-corrupt":
        path = tmp_path / "corrupt.db"
        path.write_bytes(b"not a database " * 512)
        db = DbSettings(datastore_config={"path": str(path)})
    else:  # a misconfigured server: the path is a folder
        db = DbSettings(datastore_config={"path": str(tmp_path)})
    return AanaSDK(name="down", settings=Settings(db_config=db), migrations_path=None)


@pytest.mark.parametrize("backend", ["sqlite-corrupt", "sqlite-folder", "postgresql"])
def test_database_outage__503_without_driver_text(backend: str, tmp_path: Path) -> None:
    api = FastAPI()
    api.include_router(tasks_router(unreachable_app(backend, tmp_path)), prefix="/tasks")
    with TestClient(api, raise_server_exceptions=False) as client:
        responses = [
            client.post("/tasks/", json={"endpoint": "echo"}),
            client.get(f"/tasks/{uuid.uuid4()}"),
            client.get("/tasks/"),
            client.get("/tasks/counts"),
            client.post(f"/tasks/{uuid.uuid4()}/retry"),
            client.post(f"/tasks/{uuid.uuid4()}/cancel"),
        ]
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": UNAVAILABLE}
        for leak in ("psycopg", "sqlite3", "refused", "s3cret", "not a database", "folder"):
            assert leak not in response.text


@pytest.mark.postgresql
def test_slow_database__503_after_the_timeout_not_a_hang(db: DbSettings, aana_app: AanaSDK) -> None:
    if db.datastore_type != "postgresql":
        pytest.skip("a reader waits for a lock only on PostgreSQL (SQLite readers never wait)")
    api = FastAPI()
    api.include_router(tasks_router(aana_app, timeout=0.5), prefix="/tasks")
    with db.get_engine().connect() as locker, TestClient(api) as client:
        locker.execute(text("LOCK TABLE tasks, task_counts IN ACCESS EXCLUSIVE MODE"))
        response = client.get("/tasks/counts")
        locker.rollback()
        # The abandoned query goes on in its thread until the lock is gone; let it end.
        wait_until(lambda: db.get_engine().pool.checkedout() == 1)  # type: ignore[attr-defined]
    assert response.status_code == 503
    assert response.json() == {"detail": UNAVAILABLE}


def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
    if x_api_key != "k":
        raise HTTPException(401, "a valid X-API-Key header is required")


def test_dependencies__run_before_every_route(aana_app: AanaSDK) -> None:
    api = FastAPI()
    api.include_router(tasks_router(aana_app, dependencies=[Depends(require_key)]), prefix="/t")
    with TestClient(api) as client:
        assert client.post("/t/", json={"endpoint": "e"}).status_code == 401
        assert client.get("/t/counts").status_code == 401
        assert client.get("/t/counts", headers={"X-API-Key": "k"}).status_code == 200


def test_openapi__schema_complete_and_generated_without_warnings(client: TestClient) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) >= {
        "/tasks/",
        "/tasks/counts",
        "/tasks/{task_id}",
        "/tasks/{task_id}/retry",
        "/tasks/{task_id}/cancel",
        "/metrics",
    }
    assert not any(path.startswith("/dashboard") for path in paths)
    assert paths["/tasks/"]["post"]["responses"]["201"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/Deferred"}
    task = schema["components"]["schemas"]["Task"]["properties"]
    assert {"id", "status", "progress", "result", "created_at", "completed_at"} <= set(task)
    assert paths["/tasks/"]["get"]["parameters"][0]["schema"]["maximum"] == 500
    assert "404" in paths["/tasks/{task_id}"]["get"]["responses"]
    assert "409" in paths["/tasks/{task_id}/retry"]["post"]["responses"]
