"""``dashboard_app``: the FastAPI application ``aana dashboard`` serves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fastapi import FastAPI, params

from aana.api.dashboard import dashboard_router
from aana.api.metrics import metrics_router
from aana.api.tasks import tasks_router

if TYPE_CHECKING:
    from aana.sdk import AanaSDK


def dashboard_app(app: AanaSDK, *, dependencies: Sequence[params.Depends] | None = None) -> FastAPI:
    """The dashboard at ``/``, the task API at ``/api/tasks`` and ``/metrics``.

    Args:
        app: The application whose task queue is shown.
        dependencies: FastAPI dependencies run before every route (auth).

    """
    server = FastAPI(
        title=f"{app.name} task queue",
        summary="Dashboard, HTTP API and Prometheus metrics of an aana task queue",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    server.include_router(dashboard_router(app, dependencies=dependencies))
    server.include_router(tasks_router(app, dependencies=dependencies), prefix="/api/tasks")
    server.include_router(metrics_router(app, dependencies=dependencies))
    return server
