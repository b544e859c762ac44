"""Configuration of aana: database and task queue settings."""

from aana.configs.db import DbSettings, DbType, PostgreSQLConfig, SQLiteConfig
from aana.configs.settings import Settings, TaskQueueSettings, settings

__all__ = [
    "DbSettings",
    "DbType",
    "PostgreSQLConfig",
    "SQLiteConfig",
    "Settings",
    "TaskQueueSettings",
    "settings",
]
