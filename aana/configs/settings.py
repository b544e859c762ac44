"""Process-wide settings, read from the environment and a ``.env`` file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from aana.configs.db import DbSettings, example_for
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
        retry_base_delay: Seconds a task waits after its first retryable failure; the
            wait doubles with every attempt (``RetryPolicy.base``).
        retry_max_delay: Longest wait between two attempts, in seconds (``RetryPolicy.cap``).
        retry_jitter: Fraction of the wait drawn at random, 0 to 1 (``RetryPolicy.jitter``).
        listen_url: A direct PostgreSQL URL for the workers' notification listener, when
            ``db_config`` goes through a transaction pooler such as PgBouncer (``LISTEN``
            needs a session of its own); without it workers behind a pooler poll.

    """

    enabled: bool = True
    num_workers: int = Field(default=4, ge=1)
    execution_timeout: int = Field(default=600, ge=1)
    heartbeat_timeout: int = Field(default=60, ge=1)
    max_retries: int = Field(default=3, ge=0)
    maximum_active_tasks_per_user: int = Field(default=25, ge=0)
    retry_base_delay: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    retry_max_delay: float = Field(default=300.0, ge=0, allow_inf_nan=False)
    retry_jitter: float = Field(default=0.5, ge=0, le=1)
    listen_url: str | None = None

    @field_validator("listen_url")
    @classmethod
    def _direct_url(cls, value: str | None) -> str | None:
        if value:
            from aana.storage.pooling import direct_conninfo  # SQLAlchemy: only when needed

            direct_conninfo(value)  # refuses anything but a PostgreSQL URL
        return value or None


class Settings(BaseSettings):
    """All settings of an aana application.

    ``DB_CONFIG`` holds the whole database configuration as a URL
    (``postgresql://user@host:5432/db``, ``sqlite:///path``) or as JSON; nested keys can
    also be set one by one with ``__`` (``TASK_QUEUE__MAX_RETRIES=5``,
    ``DB_CONFIG__POOL_SIZE=3``). A ``.env`` file in the working directory is read too.
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, with ``DB_CONFIG`` read as a URL when it is not JSON."""
        return (
            init_settings,
            Environment(settings_cls),
            DotEnvFile(settings_cls),
            file_secret_settings,
        )


def _decode(source: EnvSettingsSource, field_name: str, field: FieldInfo, value: Any) -> Any:
    # A URL in DB_CONFIG is handed to DbSettings as {"url": ...}: a mapping, so that
    # DB_CONFIG__POOL_SIZE and the like still merge into it.
    if field_name == "db_config" and isinstance(value, str) and not value.lstrip().startswith("{"):
        return {"url": value}
    return EnvSettingsSource.decode_complex_value(source, field_name, field, value)


class Environment(EnvSettingsSource):
    """The environment variables, DB_CONFIG read as a URL when it is not JSON."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        """The value of a nested setting: JSON, or DB_CONFIG's URL."""
        return _decode(self, field_name, field, value)


class DotEnvFile(DotEnvSettingsSource):
    """The ``.env`` file, DB_CONFIG read as a URL when it is not JSON."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        """The value of a nested setting: JSON, or DB_CONFIG's URL."""
        return _decode(self, field_name, field, value)


def load_settings() -> Settings:
    """Read ``Settings`` from the environment, naming the variable at fault when it is bad.

    Raises:
        ConfigurationError: A setting is malformed or unusable; the message names it and
            shows an example for the datastore that was asked for.

    """
    # The example matches what the user asked for: PostgreSQL users get a PostgreSQL one.
    example = example_for(os.environ.get("DB_CONFIG", ""))
    try:
        loaded = Settings()
    except SettingsError as error:
        raise ConfigurationError(
            f"{error}: {error.__cause__}. DB_CONFIG holds a URL or JSON: set it to {example}, "
            "or unset it to use the default."
        ) from error
    except ValidationError as error:
        details = error.errors()
        causes = [detail.get("ctx", {}).get("error") for detail in details]
        if all(isinstance(cause, ConfigurationError) for cause in causes):
            # A DB_CONFIG URL aana cannot use: the message already shows one that works.
            raise ConfigurationError("; ".join(map(str, causes))) from error
        problems = "; ".join(_problem(detail) for detail in details)
        raise ConfigurationError(f"{problems}. Set DB_CONFIG to {example}.") from error
    try:
        loaded.db_config.checked_config()  # fail at start, not at the first query
    except (ConfigurationError, MissingConfigKeyError) as error:
        example = example_for(loaded.db_config.datastore_type)
        raise ConfigurationError(f"DB_CONFIG: {error} Set DB_CONFIG to {example}.") from error
    return loaded


def _problem(detail: Any) -> str:
    where = ".".join(map(str, detail["loc"])) or "settings"
    return f"{where.upper() if where == 'db_config' else where}: {detail['msg']}"


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
