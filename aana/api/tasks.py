"""``tasks_router``: the task queue as a JSON API to mount in an application's FastAPI app."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, params, status
from sqlalchemy.orm import Session

from aana.api.calls import call_database
from aana.api.counts import QuietCompaction
from aana.api.models import Deferred, DeferRequest, Task, TaskCounts, TaskPage
from aana.storage.models.task import Status
from aana.storage.repository.task import TaskRepository, status_totals

if TYPE_CHECKING:
    from aana.sdk import AanaSDK

MAX_LIMIT = 500
"""The largest page ``GET /`` returns."""

TaskId = Annotated[str, Path(description="The task's id (a UUID)", max_length=64)]


def tasks_router(
    app: AanaSDK,
    *,
    dependencies: Sequence[params.Depends] | None = None,
    timeout: float = 30.0,
) -> APIRouter:
    """A router over the task queue of ``app``; mount it with ``include_router``.

    The router has no authentication of its own: pass the application's, e.g.
    ``dependencies=[Depends(require_api_key)]``; they run before every route.

    Args:
        app: The application whose database holds the tasks.
        dependencies: FastAPI dependencies run before each route (auth, rate limits).
        timeout: Seconds a database call may take before the answer is a 503.

    """
    router = APIRouter(dependencies=list(dependencies or ()), tags=["tasks"])
    compact = QuietCompaction()

    def session() -> Session:
        return Session(app.settings.db_config.get_engine(), expire_on_commit=False)

    def run(func: Any, *args: Any, **kwargs: Any) -> Any:
        return call_database(func, *args, timeout=timeout, **kwargs)

    def defer(request: DeferRequest) -> Deferred:
        options = request.model_dump(exclude={"endpoint", "data"})
        return Deferred(id=app.defer(request.endpoint, request.data, **options))

    def read(task_id: str) -> Task:
        with session() as db:
            return Task.model_validate(TaskRepository(db).read(task_id))

    def page(
        limit: int, offset: int, status: Status | None, endpoint: str | None, user_id: str | None
    ) -> TaskPage:
        filters: dict[str, Any] = {"status": status, "endpoint": endpoint, "user_id": user_id}
        with session() as db:
            repository = TaskRepository(db)
            items = repository.get_tasks(limit=limit, offset=offset, **filters)
            if user_id is None:  # the total comes from task_counts
                compact(repository)
            total = repository.count_matching(**filters)
            return TaskPage(
                items=[Task.model_validate(task) for task in items],
                total=total,
                limit=limit,
                offset=offset,
            )

    def counts() -> TaskCounts:
        with session() as db:
            repository = TaskRepository(db)
            compact(repository)
            by_endpoint = repository.count_by_endpoint()  # one read; per status derived
        by_status = status_totals(by_endpoint)
        total = by_status.pop("total")
        return TaskCounts(
            by_status={Status(key): value for key, value in by_status.items()},
            by_endpoint={
                endpoint: {Status(key): value for key, value in numbers.items()}
                for endpoint, numbers in by_endpoint.items()
            },
            total=total,
        )

    def retry(task_id: str) -> Task:
        with session() as db:
            return Task.model_validate(TaskRepository(db).retry_task(task_id))

    def cancel(task_id: str) -> Task:
        return Task.model_validate(app.cancel_task(task_id))

    errors: dict[int | str, dict[str, Any]] = {
        503: {"description": "The database is unavailable or too slow"}
    }
    not_found: dict[int | str, dict[str, Any]] = {404: {"description": "No such task"}, **errors}
    conflict: dict[int | str, dict[str, Any]] = {
        409: {"description": "The task's state does not allow it"},
        **not_found,
    }

    @router.post(
        "/",
        status_code=status.HTTP_201_CREATED,
        response_model=Deferred,
        summary="Defer a task",
        responses=errors,
    )
    async def defer_task(request: DeferRequest) -> Deferred:
        result: Deferred = await run(defer, request)
        return result

    @router.get("/", response_model=TaskPage, summary="List tasks, newest first", responses=errors)
    async def list_tasks(
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
        status: Status | None = None,
        endpoint: Annotated[str | None, Query(max_length=255)] = None,
        user_id: Annotated[str | None, Query(max_length=255)] = None,
    ) -> TaskPage:
        result: TaskPage = await run(page, limit, offset, status, endpoint, user_id)
        return result

    @router.get(
        "/counts", response_model=TaskCounts, summary="Count tasks per status", responses=errors
    )
    async def count_tasks() -> TaskCounts:
        result: TaskCounts = await run(counts)
        return result

    @router.get("/{task_id}", response_model=Task, summary="Read a task", responses=not_found)
    async def get_task(task_id: TaskId) -> Task:
        result: Task = await run(read, task_id)
        return result

    @router.post(
        "/{task_id}/retry",
        response_model=Task,
        summary="Send a task that is not running back to the queue",
        responses=conflict,
    )
    async def retry_task(task_id: TaskId) -> Task:
        result: Task = await call_database(retry, task_id, timeout=timeout, conflicts=(ValueError,))
        return result

    @router.post(
        "/{task_id}/cancel",
        response_model=Task,
        summary="Cancel a task (at its end if it runs)",
        responses=conflict,
    )
    async def cancel_task(task_id: TaskId) -> Task:
        result: Task = await run(cancel, task_id)
        return result

    return router
