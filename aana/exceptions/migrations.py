"""Exceptions of the migration commands (*ours*)."""

from __future__ import annotations

from collections.abc import Sequence

from aana.exceptions.db import DatabaseException


class MigrationException(DatabaseException):
    """A migration command cannot do what was asked; the message says why and what to do."""


class UnknownRevisionException(MigrationException):
    """The database is at a revision that none of the known migrations defines."""

    def __init__(self, revisions: Sequence[str]) -> None:
        named = ", ".join(repr(revision) for revision in revisions)
        super().__init__(
            f"The database is at revision {named}, which none of the known migrations "
            "defines. Name the application that migrated it (APP_PATH), or install the aana "
            "version that did; nothing was changed.",
            revisions=list(revisions),
        )
        self.revisions = list(revisions)
