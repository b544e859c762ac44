"""Exceptions for bad configuration (*ours*)."""

from __future__ import annotations


class ConfigurationError(ValueError):
    """A setting has a value aana cannot use; the message names the setting and the fix."""


class MissingConfigKeyError(KeyError):
    """``datastore_config`` lacks a key its ``datastore_type`` requires."""

    def __init__(self, key: str, datastore_type: str, required: tuple[str, ...]) -> None:
        super().__init__(key)
        self.key = key
        self.datastore_type = datastore_type
        self.required = required

    def __str__(self) -> str:
        return (
            f"datastore_config is missing the key {self.key!r}, which datastore_type "
            f"{self.datastore_type!r} requires; give all of: {', '.join(self.required)}."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.key, self.datastore_type, self.required))


class AppPathError(ConfigurationError):
    """An application path (``module:attribute``) does not name an ``AanaSDK``.

    Raised for a malformed path; the subclasses say what else went wrong.
    """


class AppModuleNotFoundError(AppPathError):
    """The module of an application path cannot be imported."""


class AppAttributeNotFoundError(AppPathError):
    """The module of an application path has no such attribute."""


class NotAnAppError(AppPathError):
    """The attribute named by an application path is not an ``AanaSDK``."""


class MigrationsThroughPoolerError(ConfigurationError):
    """Migrations were asked of a database reached through a transaction pooler."""

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(
            f"{where} is reached through a transaction pooler (such as PgBouncer in "
            "transaction mode). Migrations hold a session advisory lock, which a pooler "
            "does not keep between transactions: run them with a direct connection to "
            "PostgreSQL (DB_CONFIG with the server's own host and port). Nothing was changed."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.where,))
