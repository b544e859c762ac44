"""Running the synchronous queue calls off the event loop, their errors as HTTP answers.

The endpoints are ``async``; each database call runs in Starlette's threadpool
(``run_in_threadpool``), so a slow query blocks one pool thread, never the event loop,
and is abandoned with a 503 after ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException, status
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from aana.exceptions.config import ConfigurationError, MissingConfigKeyError
from aana.exceptions.db import (
    ConstraintViolationException,
    DatabaseException,
    DatabaseNotMigratedError,
    InvalidInputException,
    NotFoundException,
    TaskAlreadyFinishedException,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

UNAVAILABLE = "The task database is unavailable or too slow right now; try again shortly."
"""What a client is told of a database outage: the driver's message stays in the log."""


def http_error(
    error: Exception, conflicts: tuple[type[Exception], ...] = ()
) -> HTTPException | None:
    """The HTTP answer standing for ``error``; None if it is not one the API expects.

    Args:
        error: What the call raised.
        conflicts: Further exception classes that mean the request conflicts with the
            task's state (409), e.g. ``ValueError`` for retrying a running task.

    """
    if isinstance(error, NotFoundException):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(error))
    if isinstance(error, ConstraintViolationException | TaskAlreadyFinishedException):
        return HTTPException(status.HTTP_409_CONFLICT, str(error))
    if isinstance(error, DatabaseNotMigratedError):
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error))
    if isinstance(
        error,
        DatabaseException
        | SQLAlchemyError
        | TimeoutError
        | ConfigurationError
        | MissingConfigKeyError,
    ):
        # The server's problem, not the request's: the detail stays in the log.
        logger.error("task API: the database failed: %s", error)
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, UNAVAILABLE)
    if isinstance(error, conflicts):
        return HTTPException(status.HTTP_409_CONFLICT, str(error))
    if isinstance(error, InvalidInputException | TypeError | ValueError):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error))
    return None


async def call_database(
    func: Callable[..., T],
    *args: Any,
    timeout: float,
    conflicts: tuple[type[Exception], ...] = (),
    **kwargs: Any,
) -> T:
    """``func(*args, **kwargs)`` in the threadpool, its errors raised as ``HTTPException``.

    Raises:
        HTTPException: 404, 409, 422 or 503 (see ``http_error``); 503 also when the
            call takes longer than ``timeout`` seconds.

    """
    try:
        return await asyncio.wait_for(
            run_in_threadpool(functools.partial(func, *args, **kwargs)), timeout
        )
    except Exception as error:
        translated = http_error(error, conflicts)
        if translated is None:
            raise
        raise translated from error
