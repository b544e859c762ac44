"""The application object."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aana.configs.settings import Settings
from aana.configs.settings import settings as default_settings
from aana.storage.op import run_alembic_migrations
from aana.tasks.app import TaskQueueMixin

MigrationFunc = Callable[[Settings], Any]


class AanaSDK(TaskQueueMixin):
    """An aana application: its name, its settings and how its database is migrated.

    Args:
        name: The application's name.
        migration_func: Called with the settings by ``migrate()`` instead of the
            package's migrations.
        settings: Settings to use; the process-wide ``aana.configs.settings`` by default.
        retryable_exceptions: Exception classes (or class names) whose failed tasks
            are retried, up to ``task_queue.max_retries`` attempts.

    """

    def __init__(
        self,
        name: str = "app",
        migration_func: MigrationFunc | None = None,
        settings: Settings | None = None,
        retryable_exceptions: Iterable[type[BaseException] | str] | None = None,
    ) -> None:
        self.name = name
        self.migration_func = migration_func
        self._settings = settings
        self.init_task_queue(retryable_exceptions)

    @property
    def settings(self) -> Settings:
        """The settings in force: the ones given, else the process-wide ones as they are now."""
        return self._settings if self._settings is not None else default_settings

    def migrate(self) -> None:
        """Bring the database schema up to date; running it again changes nothing."""
        if self.migration_func is not None:
            self.migration_func(self.settings)
        else:
            run_alembic_migrations(self.settings)

    def __repr__(self) -> str:
        return f"AanaSDK(name={self.name!r})"
