"""The durable task queue's runtime: handlers, the worker, the CLI.

The names below load on first use, so that the supervisor of ``aana worker`` (which
imports only ``aana.tasks.supervisor``) stays a small process.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aana.tasks.handlers import TaskContext
    from aana.tasks.options import RetryPolicy
    from aana.tasks.worker import Worker, WorkerOptions

__all__ = ["RetryPolicy", "TaskContext", "Worker", "WorkerOptions"]

_HOMES = {
    "TaskContext": "aana.tasks.handlers",
    "RetryPolicy": "aana.tasks.options",
    "Worker": "aana.tasks.worker",
    "WorkerOptions": "aana.tasks.worker",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
