"""The application object."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aana.exceptions.config import (
    AppAttributeNotFoundError,
    AppModuleNotFoundError,
    AppPathError,
    NotAnAppError,
)
from aana.tasks.app import TaskQueueMixin

if TYPE_CHECKING:
    # The settings load on first use, Alembic only when migrations run: a worker process
    # of ``aana worker --processes N`` needs neither (it is handed its options).
    from aana.configs.settings import Settings
    from aana.storage.op import AppMigrations

MigrationFunc = Callable[["Settings"], Any]


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

    @classmethod
    def from_path(cls, app_path: str) -> AanaSDK:
        """The application named by ``app_path``: ``module:attribute`` of an ``AanaSDK``.

        The module is imported as ``import`` would (``sys.path`` as it is); nothing but
        the application's own module is loaded, so worker processes can use this
        without the command line.

        Raises:
            AppPathError: ``app_path`` is not of the form ``module:attribute``.
            AppModuleNotFoundError: The module cannot be imported.
            AppAttributeNotFoundError: The module has no such attribute.
            NotAnAppError: The attribute is not an ``AanaSDK``.

        """
        module_name, _, attribute = app_path.partition(":")
        if not module_name or not attribute:
            raise AppPathError(
                f"{app_path!r} is not of the form module:attribute (e.g. myapp.main:aana_app)"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise AppModuleNotFoundError(
                f"cannot import module {module_name!r} of {app_path!r}: {error}"
            ) from error
        if not hasattr(module, attribute):
            raise AppAttributeNotFoundError(
                f"{app_path!r} must name an AanaSDK instance, but {attribute!r} in "
                f"{module_name!r} is nothing: the module has no such attribute"
            )
        app = getattr(module, attribute)
        if not isinstance(app, AanaSDK):
            raise NotAnAppError(
                f"{app_path!r} must name an AanaSDK instance, but {attribute!r} in "
                f"{module_name!r} is a {type(app).__name__}"
            )
        return app

    @property
    def settings(self) -> Settings:
        """The settings in force: the ones given, else the process-wide ones as they are now."""
        if self._settings is not None:
            return self._settings
        from aana.configs.settings import settings as default_settings

        return default_settings

    @property
    def migrations(self) -> AppMigrations | None:
        """Where the application's migrations live; None if it has no module file."""
        if self.migrations_path is None:
            return None
        from aana.storage.op import AppMigrations

        return AppMigrations(label=self.name, path=self.migrations_path)

    def migrate(self) -> None:
        """Apply the package's migrations, then the application's; again changes nothing."""
        if self.migration_func is not None:
            self.migration_func(self.settings)
        else:
            from aana.storage.op import run_alembic_migrations

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
