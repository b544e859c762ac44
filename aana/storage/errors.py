"""Turning driver errors into aana's exceptions, in one place."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from aana.exceptions.core import BaseException as AanaException
from aana.exceptions.db import ConstraintViolationException, DatabaseException
from aana.storage.dialects import Violation, violation_of

OnViolation = Callable[[Violation], AanaException | None]


def _describe(violation: Violation) -> str:
    kind = violation.kind.replace("_", " ")
    named = f" {violation.constraint!r}" if violation.constraint else ""
    return f"the row breaks the {kind} constraint{named} of the schema"


@contextmanager
def translate_errors(action: str, on_violation: OnViolation | None = None) -> Iterator[None]:
    """Re-raise database errors met while doing ``action`` as aana exceptions.

    Args:
        action: What was being done, for the message ("saving a video").
        on_violation: Maps a constraint violation to a domain exception (or None to fall
            back to ``ConstraintViolationException``).

    Raises:
        ConstraintViolationException: A constraint was broken.
        DatabaseException: Any other database failure, with the driver error chained.

    """
    try:
        yield
    except IntegrityError as error:
        violation = violation_of(error.orig)
        domain_error = on_violation(violation) if on_violation else None
        if domain_error is not None:
            raise domain_error from error
        raise ConstraintViolationException(
            f"{action} failed: {_describe(violation)}.", violation.constraint
        ) from error
    except DBAPIError as error:
        cause = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise DatabaseException(f"{action} failed: {cause}") from error
    except StatementError as error:
        if isinstance(error.orig, ValueError | TypeError):
            # A value its column type refused while binding: the caller's input is at fault.
            refused = TypeError if isinstance(error.orig, TypeError) else ValueError
            raise refused(f"{action} failed: {error.orig}") from error
        raise DatabaseException(f"{action} failed: {error}") from error
    except SQLAlchemyError as error:
        raise DatabaseException(f"{action} failed: {error}") from error
