"""Exceptions raised by the storage layer."""

from __future__ import annotations

from typing import Any

from aana.exceptions.core import BaseException


class NotFoundException(BaseException):
    """No row of ``table_name`` has the id ``id``."""

    http_status_code = 404

    def __init__(self, table_name: str, id: Any) -> None:
        super().__init__(f"No {table_name} with id {id!r} was found.", table_name=table_name, id=id)
        self.table_name = table_name
        self.id = id


class MediaIdAlreadyExistsException(BaseException):
    """A media row with this id already exists."""

    http_status_code = 409

    def __init__(self, table_name: str, media_id: str) -> None:
        super().__init__(
            f"A {table_name} with media id {media_id!r} already exists; "
            "use a new media id or read the existing one.",
            table_name=table_name,
            media_id=media_id,
        )
        self.table_name = table_name
        self.media_id = media_id


class DatabaseException(BaseException):
    """A database operation failed; the driver's error is chained as ``__cause__``."""

    http_status_code = 500


class ConstraintViolationException(DatabaseException):
    """A row broke a constraint of the schema (*ours*).

    ``constraint`` names the constraint when the driver reports it (PostgreSQL does;
    SQLite reports only the kind of constraint).
    """

    http_status_code = 422

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message, constraint=constraint)
        self.constraint = constraint


class DatabaseConnectionException(DatabaseException):
    """The database could not be reached (*ours*); the message names where, never how."""

    http_status_code = 503


class InvalidInputException(BaseException):
    """A value cannot be stored as given (*ours*); nothing was written.

    Raised before the value reaches the database, the same on every backend. ``column``
    names where the value was headed (``"caption.frame_id"``, ``"task data"``).
    """

    http_status_code = 422

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message, column=column)
        self.column = column


class InvalidValueException(InvalidInputException, ValueError):
    """A value has the right type but cannot be stored: NaN, out of range, a lone surrogate."""


class InvalidTypeException(InvalidInputException, TypeError):
    """A value has a type its column cannot store."""


class InvalidJsonException(InvalidTypeException, ValueError):
    """A value cannot be stored as JSON: both a ``TypeError`` and a ``ValueError``."""


class DatabaseNotMigratedError(DatabaseException):
    """The database lacks a table or column the models use (*ours*): run the migrations.

    ``missing`` names what is missing when it is known (``"table tasks"``,
    ``"column video.duration"``).
    """

    http_status_code = 503

    def __init__(self, missing: list[str] | None = None, cause: str | None = None) -> None:
        if missing:
            found = f"The database lacks {', '.join(missing)}"
        else:
            found = "The database lacks a table or column that the models use"
            found += f" ({cause})" if cause else ""
        super().__init__(
            f"{found}: its schema is behind the models; run `aana migrate APP` first "
            "(APP: your application, e.g. myapp.main:aana_app; `aana migrate` alone for "
            "aana's own tables).",
            missing=list(missing or []),
        )
        self.missing = list(missing or [])


class UnknownPolymorphicIdentityError(DatabaseException):
    """A row belongs to a subclass no imported model defines (*ours*).

    Rows saved through an application's subclass (``ExtendedVideoEntity``) are read
    through the parent's repository only once the module defining the subclass is
    imported.
    """

    http_status_code = 500

    def __init__(self, table_name: str, identities: list[str], parent: str) -> None:
        named = ", ".join(repr(identity) for identity in identities)
        super().__init__(
            f"rows of the table {table_name!r} have the polymorphic identity {named}, which "
            f"no imported model defines. Import the module that defines the subclass of "
            f"{parent} with polymorphic_identity={identities[0]!r} (your application's "
            "models module, e.g. the one that creates your AanaSDK) before reading them.",
            table_name=table_name,
            identities=identities,
            parent=parent,
        )
        self.table_name = table_name
        self.identities = identities
        self.parent = parent


class TaskAlreadyFinishedException(BaseException, ValueError):
    """The task ended (completed, failed or cancelled) and cannot be cancelled (*ours*)."""

    http_status_code = 409

    def __init__(self, table_name: str, id: Any, status: str) -> None:
        super().__init__(
            f"Task {id} is already {status}: only a task that is not finished can be "
            "cancelled. Nothing was changed.",
            table_name=table_name,
            id=id,
            status=status,
        )
        self.table_name = table_name
        self.id = id
        self.status = status
