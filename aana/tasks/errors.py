"""Errors a worker stores as results; ``result["error"]`` holds their class names."""

from __future__ import annotations

from aana.exceptions.core import BaseException as AanaException


class UnknownEndpointError(AanaException):
    """No handler is registered for the task's endpoint."""


class ResultNotSerializableError(AanaException):
    """A handler returned a value that cannot be stored as JSON."""


class WorkerShutdownError(AanaException):
    """The worker stopped before the task finished (the task is handed back)."""


class ResultNotStorableError(AanaException):
    """A handler's result is JSON that the database cannot store.

    For instance a NUL character or a lone surrogate in a string, nesting deeper than
    the JSON encoder goes, or more than the worker's size cap; the message says which.
    """


class QueueUnavailableError(AanaException):
    """The worker could not claim tasks: the database failed (a burst worker stops)."""
