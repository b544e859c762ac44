"""Turning driver errors into aana's exceptions, in one place."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Literal

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from aana.exceptions.core import BaseException as AanaException
from aana.exceptions.db import (
    ConstraintViolationException,
    DatabaseException,
    InvalidInputException,
)
from aana.storage.dialects import Violation, violation_of

OnViolation = Callable[[Violation], AanaException | None]


def _describe(violation: Violation) -> str:
    kind = violation.kind.replace("_", " ")
    named = f" {violation.constraint!r}" if violation.constraint else ""
    return f"the row breaks the {kind} constraint{named} of the schema"


def translate_errors(action: str, on_violation: OnViolation | None = None) -> ErrorTranslation:
    """Re-raise database errors met while doing ``action`` as aana exceptions.

    Use as ``with translate_errors("saving a video"): ...``.

    Args:
        action: What was being done, for the message ("saving a video").
        on_violation: Maps a constraint violation to a domain exception (or None to fall
            back to ``ConstraintViolationException``).

    Raises:
        InvalidInputException: A column type refused a value (``aana.storage.checks``).
        ConstraintViolationException: A constraint was broken.
        DatabaseException: Any other database failure, with the driver error chained.

    """
    return ErrorTranslation(action, on_violation)


class ErrorTranslation:
    """The context manager of ``translate_errors`` (a class: it runs on the hot path)."""

    __slots__ = ("action", "on_violation")

    def __init__(self, action: str, on_violation: OnViolation | None) -> None:
        self.action = action
        self.on_violation = on_violation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if isinstance(error, SQLAlchemyError):
            translated = self.translated(error)
            if translated is getattr(error, "orig", None):
                raise translated from None  # the original, not wrapped: nothing to chain
            raise translated from error
        return False

    def translated(self, error: SQLAlchemyError) -> Exception:
        """The aana exception (or ``TypeError``/``ValueError``) standing for ``error``."""
        action = self.action
        if isinstance(error, IntegrityError):
            violation = violation_of(error.orig)
            domain_error = self.on_violation(violation) if self.on_violation else None
            if domain_error is not None:
                return domain_error
            return ConstraintViolationException(
                f"{action} failed: {_describe(violation)}.", violation.constraint
            )
        if isinstance(error, DBAPIError):
            cause = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            return DatabaseException(f"{action} failed: {cause}")
        if isinstance(error, StatementError) and isinstance(error.orig, InvalidInputException):
            # A column type refused a value while binding: its message names the column.
            return error.orig
        if isinstance(error, StatementError) and isinstance(error.orig, ValueError | TypeError):
            # A value its column type refused while binding: the caller's input is at fault.
            refused = TypeError if isinstance(error.orig, TypeError) else ValueError
            return refused(f"{action} failed: {error.orig}")
        return DatabaseException(f"{action} failed: {error}")
