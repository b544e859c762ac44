"""The application object."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aana.configs.settings import Settings
from aana.configs.settings import settings as default_settings
from aana.storage.op import AppMigrations, run_alembic_migrations
from aana.tasks.app import TaskQueueMixin

MigrationFunc = Callable[[Settings], Any]


class AanaSDK(TaskQueueMixin):
    """An aana application: its name, its settings and how its database is migrated.

    Args:
        name: The application's name; it also labels the branch of its migrations.
        migration_func: Called with the settings by ``migrate()`` instead of the
            package's and the application's migrations.
        settings: Settings to use; the process-wide ``aana.configs.settings`` by default.
        migrations_path: The folder of the application's own migrations; by default
            ``migrations/`` beside the module that creates the ``AanaSDK``.
        retryable_exceptions: Exception classes (or class names) whose failed tasks
            are retried, up to ``task_queue.max_retries`` attempts.

    """

    def __init__(
        self,
        name: str = "app",
        migration_func: MigrationFunc | None = None,
        settings: Settings | None = None,
        migrations_path: Path | str | None = None,
        retryable_exceptions: Iterable[type[BaseException] | str] | None = None,
    ) -> None:
        self.name = name
        self.migration_func = migration_func
        self._settings = settings
        self.migrations_path = (
            Path(migrations_path) if migrations_path is not None else _migrations_beside_caller()
        )
        self.init_task_queue(retryable_exceptions)

    @property
    def settings(self) -> Settings:
        """The settings in force: the ones given, else the process-wide ones as they are now."""
        return self._settings if self._settings is not None else default_settings

    @property
    def migrations(self) -> AppMigrations | None:
        """Where the application's migrations live; None if it has no module file."""
        if self.migrations_path is None:
            return None
        return AppMigrations(label=self.name, path=self.migrations_path)

    def migrate(self) -> None:
        """Apply the package's migrations, then the application's; again changes nothing."""
        if self.migration_func is not None:
            self.migration_func(self.settings)
        else:
            run_alembic_migrations(self.settings, app=self.migrations)

    def __repr__(self) -> str:
        return f"AanaSDK(name={self.name!r})"


def _migrations_beside_caller() -> Path | None:
    """``migrations/`` beside the module creating the AanaSDK (None in a REPL)."""
    frame = inspect.currentframe()
    if frame is None:  # an interpreter without frame introspection
        return None
    while frame.f_back is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    module_file = frame.f_globals.get("__file__")
    return Path(module_file).resolve().parent / "migrations" if module_file else None
