"""Process-wide settings, read from the environment and a ``.env`` file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from aana.configs.db import DbSettings
from aana.exceptions.config import ConfigurationError, MissingConfigKeyError


class TaskQueueSettings(BaseModel):
    """Settings of the task queue.

    Attributes:
        enabled: Whether the application runs the task queue.
        num_workers: Worker processes (or concurrent tasks) per ``aana worker``.
        execution_timeout: Seconds a task may run before it is considered lost.
        heartbeat_timeout: Seconds without a heartbeat before a task is considered lost.
        max_retries: Attempts before a task that keeps failing is left FAILED.
        maximum_active_tasks_per_user: Running or assigned tasks one user may have at once;
            0 means no limit (as ``aana worker --max-active-per-user 0``).

    """

    enabled: bool = True
    num_workers: int = Field(default=4, ge=1)
    execution_timeout: int = Field(default=600, ge=1)
    heartbeat_timeout: int = Field(default=60, ge=1)
    max_retries: int = Field(default=3, ge=0)
    maximum_active_tasks_per_user: int = Field(default=25, ge=0)


class Settings(BaseSettings):
    """All settings of an aana application.

    ``DB_CONFIG`` holds the whole database configuration as JSON; nested keys can also be
    set one by one with ``__`` (``TASK_QUEUE__MAX_RETRIES=5``). A ``.env`` file in the
    working directory is read too.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
        validate_assignment=True,
        hide_input_in_errors=True,
    )

    db_config: DbSettings = Field(default_factory=DbSettings)
    task_queue: TaskQueueSettings = Field(default_factory=TaskQueueSettings)


def load_settings() -> Settings:
    """Read ``Settings`` from the environment, naming the variable at fault when it is bad."""
    example = (
        'an object such as {"datastore_type": "sqlite", "datastore_config": '
        '{"path": "/var/lib/aana_data"}}, or unset it to use the default'
    )
    try:
        loaded = Settings()
    except SettingsError as error:
        raise ConfigurationError(
            f"{error}: {error.__cause__}. Environment variables hold JSON for nested "
            f"settings: set DB_CONFIG to {example}."
        ) from error
    try:
        loaded.db_config.checked_config()  # fail at start, not at the first query
    except (ConfigurationError, MissingConfigKeyError) as error:
        raise ConfigurationError(f"DB_CONFIG: {error} Set DB_CONFIG to {example}.") from error
    return loaded


_loaded: Settings | None = None


def __getattr__(name: str) -> Any:
    # ``settings`` is read from the environment on first use, not at import: importing
    # aana (or running ``aana --help``) works whatever DB_CONFIG holds, and a bad value is
    # reported where it is used, with the fix.
    global _loaded
    if name == "settings":
        if _loaded is None:
            _loaded = load_settings()
            globals()["settings"] = _loaded
        return _loaded
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    settings: Settings
    """The process-wide settings, read from the environment on first use."""
