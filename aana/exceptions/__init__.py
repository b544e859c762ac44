"""Exceptions of the aana package."""

from aana.exceptions.core import BaseException
from aana.exceptions.db import (
    ConstraintViolationException,
    DatabaseConnectionException,
    DatabaseException,
    DatabaseNotMigratedError,
    InvalidInputException,
    InvalidJsonException,
    InvalidTypeException,
    InvalidValueException,
    MediaIdAlreadyExistsException,
    NotFoundException,
    UnknownPolymorphicIdentityError,
)

__all__ = [
    "BaseException",
    "ConstraintViolationException",
    "DatabaseConnectionException",
    "DatabaseException",
    "DatabaseNotMigratedError",
    "InvalidInputException",
    "InvalidJsonException",
    "InvalidTypeException",
    "InvalidValueException",
    "MediaIdAlreadyExistsException",
    "NotFoundException",
    "UnknownPolymorphicIdentityError",
]
