"""The task queue over HTTP: a FastAPI router, a web dashboard and Prometheus metrics.

Needs the ``api`` extra (``pip install 'aana-storage[api]'``): FastAPI, Jinja2,
prometheus_client and uvicorn. Nothing else in ``aana`` imports this package.
"""

from aana.api.dashboard import dashboard_router
from aana.api.metrics import metrics_router
from aana.api.server import dashboard_app
from aana.api.tasks import tasks_router

__all__ = ["dashboard_app", "dashboard_router", "metrics_router", "tasks_router"]
