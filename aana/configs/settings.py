"""Process-wide settings, read from the environment and a ``.env`` file."""

from __future__ import annotations

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
        maximum_active_tasks_per_user: Running or assigned tasks one user may have at once.
        retry_base_delay: Seconds a task waits after its first retryable failure; the
            wait doubles with every attempt (``RetryPolicy.base``).
        retry_max_delay: Longest wait between two attempts, in seconds (``RetryPolicy.cap``).
        retry_jitter: Fraction of the wait drawn at random, 0 to 1 (``RetryPolicy.jitter``).

    """

    enabled: bool = True
    num_workers: int = Field(default=4, ge=1)
    execution_timeout: int = Field(default=600, ge=1)
    heartbeat_timeout: int = Field(default=60, ge=1)
    max_retries: int = Field(default=3, ge=0)
    maximum_active_tasks_per_user: int = Field(default=25, ge=1)
    retry_base_delay: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    retry_max_delay: float = Field(default=300.0, ge=0, allow_inf_nan=False)
    retry_jitter: float = Field(default=0.5, ge=0, le=1)


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


settings = load_settings()
