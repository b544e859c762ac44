"""The durable task queue's runtime: handlers, the worker, the CLI."""

from aana.tasks.handlers import TaskContext
from aana.tasks.options import RetryPolicy
from aana.tasks.worker import Worker, WorkerOptions

__all__ = ["RetryPolicy", "TaskContext", "Worker", "WorkerOptions"]
