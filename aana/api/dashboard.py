"""``dashboard_router``: the task queue as server-rendered web pages.

Pages are Jinja2 templates with autoescaping on: task data, results, tracebacks and
endpoint names are shown as text, never as markup. A small script (``static/``) reloads
the page's panels every few seconds without reloading the page. Retry and cancel are
POST forms protected by a double-submit cookie: the form carries the token the cookie
holds, which another site can neither read nor set.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Path, Request, Response, params, status
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader
from sqlalchemy.orm import Session

from aana.api.calls import call_database
from aana.api.counts import CachedCounts
from aana.storage.models.task import Status, TaskEntity
from aana.storage.models.worker import WorkerEntity
from aana.storage.repository.task import TaskRepository
from aana.storage.repository.worker import WorkerRepository

if TYPE_CHECKING:
    from aana.sdk import AanaSDK

CSRF_COOKIE = "aana_dashboard_csrf"
CSRF_FIELD = "csrf_token"
CHART_MINUTES = 60
WORKERS_SHOWN_SECONDS = 600.0
"""Workers silent for longer are left off the page (their rows go after an hour)."""
SECURITY_HEADERS = {
    # Only the dashboard's own script and style; no inline script can run.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
STATIC_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}

TaskId = Annotated[str, Path(max_length=64)]


@dataclass
class Overview:
    """What the main page shows."""

    by_status: dict[str, int]
    by_endpoint: dict[str, dict[str, int]]
    active: list[TaskEntity]
    workers: list[WorkerEntity]
    heartbeat_timeout: float
    failures: list[TaskEntity]
    recent: list[TaskEntity]
    chart: dict[str, Any] = field(default_factory=dict)


def _chart(rows: list[tuple[str, str, int]], now: datetime) -> dict[str, Any]:
    """Bars of tasks completed and failed per minute over the last hour, as SVG geometry."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=CHART_MINUTES - 1)
    minutes = [(start + timedelta(minutes=n)).strftime("%Y-%m-%d %H:%M") for n in range(60)]
    completed = dict.fromkeys(minutes, 0)
    failed = dict.fromkeys(minutes, 0)
    for minute, task_status, number in rows:
        target = completed if task_status == Status.COMPLETED.value else failed
        if minute in target:
            target[minute] += number
    peak = max([*completed.values(), *failed.values(), 1])
    height = 100.0
    bars = []
    for n, minute in enumerate(minutes):
        done, bad = completed[minute], failed[minute]
        bars.append(
            {
                "x": n * 10,
                "minute": minute,
                "completed": done,
                "failed": bad,
                "completed_height": height * done / peak,
                "failed_height": height * bad / peak,
            }
        )
    return {
        "bars": bars,
        "peak": peak,
        "completed": sum(completed.values()),
        "failed": sum(failed.values()),
    }


def _overview(app: AanaSDK, counts: CachedCounts) -> Overview:
    with Session(app.settings.db_config.get_engine(), expire_on_commit=False) as db:
        repository = TaskRepository(db)
        active = repository.get_tasks(status=Status.RUNNING, limit=50)
        active += repository.get_tasks(status=Status.ASSIGNED, limit=50)
        overview = Overview(
            by_status=counts.by_status(),
            by_endpoint=counts.by_endpoint(),
            active=active,
            workers=WorkerRepository(db).seen_within(WORKERS_SHOWN_SECONDS),
            heartbeat_timeout=app.settings.task_queue.heartbeat_timeout,
            failures=repository.latest_ended(Status.FAILED, 10),
            recent=repository.get_tasks(limit=20),
        )
        overview.chart = _chart(repository.finished_per_minute(CHART_MINUTES * 60), _utc_now())
        return overview


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _age(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = max(0.0, (_utc_now() - moment).total_seconds())
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _seconds_ago(moment: datetime) -> float:
    return max(0.0, (_utc_now() - moment).total_seconds())


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("aana.api", "templates"), autoescape=True, auto_reload=False
    )
    environment.filters["pretty_json"] = _pretty_json
    environment.filters["age"] = _age
    environment.filters["seconds_ago"] = _seconds_ago
    environment.globals["statuses"] = [task_status.value for task_status in Status]
    return environment


def dashboard_router(
    app: AanaSDK,
    *,
    dependencies: Sequence[params.Depends] | None = None,
    timeout: float = 10.0,
    refresh_seconds: float = 5.0,
    counts_seconds: float = 2.0,
    secure_cookie: bool = False,
) -> APIRouter:
    """The dashboard's pages; mount it with ``include_router`` (with a prefix or without).

    It has no authentication of its own: pass the application's in ``dependencies``.

    Args:
        app: The application whose database holds the tasks.
        dependencies: FastAPI dependencies run before each page (auth).
        timeout: Seconds the database may take before a page shows an error (503).
        refresh_seconds: How often the main page reloads its panels.
        counts_seconds: How long one counting of the tasks is shown (counting reads the
            whole table; the other panels are read at every refresh).
        secure_cookie: Send the CSRF cookie over HTTPS only (set it behind TLS).

    """
    router = APIRouter(dependencies=list(dependencies or ()), include_in_schema=False)
    templates = _environment()
    counts = CachedCounts(app, counts_seconds)

    def render(
        request: Request, template: str, code: int = status.HTTP_200_OK, **values: Any
    ) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        body = templates.get_template(template).render(
            csrf_token=token, refresh_seconds=refresh_seconds, app_name=app.name, **values
        )
        response = HTMLResponse(body, status_code=code, headers=SECURITY_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != token:
            response.set_cookie(
                CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie
            )
        return response

    async def load(request: Request, template: str, func: Any, *args: Any) -> tuple[Any, Any]:
        """``func(*args)``'s value, or the error page to answer instead."""
        try:
            return await call_database(func, *args, timeout=timeout), None
        except HTTPException as error:
            page = render(request, template, error.status_code, error=error.detail)
            return None, page

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        overview, failed = await load(request, "index.html", _overview, app, counts)
        return failed or render(request, "index.html", overview=overview, error=None)

    @router.get("/panels", response_class=HTMLResponse)
    async def panels(request: Request) -> HTMLResponse:
        overview, failed = await load(request, "panels.html", _overview, app, counts)
        return failed or render(request, "panels.html", overview=overview, error=None)

    def read(task_id: str) -> TaskEntity:
        with Session(app.settings.db_config.get_engine(), expire_on_commit=False) as db:
            return TaskRepository(db).read(task_id)

    @router.get("/tasks/{task_id}", response_class=HTMLResponse)
    async def task_page(request: Request, task_id: TaskId) -> HTMLResponse:
        task, failed = await load(request, "task.html", read, task_id)
        return failed or render(request, "task.html", task=task, error=None)

    def retry(task_id: str) -> TaskEntity:
        with Session(app.settings.db_config.get_engine(), expire_on_commit=False) as db:
            return TaskRepository(db).retry_task(task_id)

    async def change(request: Request, task_id: str, func: Any) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        sent = (form.get(CSRF_FIELD) or [""])[0]
        cookie = request.cookies.get(CSRF_COOKIE) or ""
        if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
            return render(
                request,
                "task.html",
                status.HTTP_403_FORBIDDEN,
                task=None,
                error="The form expired or did not come from this dashboard (CSRF check "
                "failed): reload the page and try again.",
            )
        try:
            task = await call_database(func, task_id, timeout=timeout, conflicts=(ValueError,))
        except HTTPException as error:
            task, _ = await load(request, "task.html", read, task_id)
            return render(request, "task.html", error.status_code, task=task, error=error.detail)
        # Post/redirect/get: reloading the page shows the task, it does not post again.
        # The form posted to tasks/ID/ACTION: ../ID is the task's page.
        return RedirectResponse(f"../{task.id}", status_code=status.HTTP_303_SEE_OTHER)

    @router.post("/tasks/{task_id}/retry", response_class=HTMLResponse)
    async def retry_task(request: Request, task_id: TaskId) -> Response:
        return await change(request, task_id, retry)

    @router.post("/tasks/{task_id}/cancel", response_class=HTMLResponse)
    async def cancel_task(request: Request, task_id: TaskId) -> Response:
        return await change(request, task_id, app.cancel_task)

    static = {
        name: resources.files("aana.api").joinpath("static", name).read_bytes()
        for name in STATIC_TYPES
    }

    @router.get("/static/{name}")
    async def static_file(name: str) -> Response:
        if name not in static:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No such file")
        return Response(
            static[name],
            media_type=STATIC_TYPES[name],
            headers={"Cache-Control": "max-age=300", **SECURITY_HEADERS},
        )

    return router
