"""Exceptions of the aana package."""

from aana.exceptions.core import BaseException
from aana.exceptions.db import (
    ConstraintViolationException,
    DatabaseConnectionException,
    DatabaseException,
    InvalidInputException,
    InvalidJsonException,
    InvalidTypeException,
    InvalidValueException,
    MediaIdAlreadyExistsException,
    NotFoundException,
)

__all__ = [
    "BaseException",
    "ConstraintViolationException",
    "DatabaseConnectionException",
    "DatabaseException",
    "InvalidInputException",
    "InvalidJsonException",
    "InvalidTypeException",
    "InvalidValueException",
    "MediaIdAlreadyExistsException",
    "NotFoundException",
]
