"""Configuration of aana: database and task queue settings."""

import sys
from typing import TYPE_CHECKING, Any

from aana.configs.db import DbSettings, DbType, PostgreSQLConfig, SQLiteConfig
from aana.configs.settings import Settings, TaskQueueSettings

# Importing the submodule bound its name here; ``aana.configs.settings`` means the
# process-wide settings object (as in the original SDK), which loads on first use.
del globals()["settings"]

if TYPE_CHECKING:
    from aana.configs.settings import settings

__all__ = [
    "DbSettings",
    "DbType",
    "PostgreSQLConfig",
    "SQLiteConfig",
    "Settings",
    "TaskQueueSettings",
    "settings",
]


def __getattr__(name: str) -> Any:
    # The process-wide settings load on first use (see aana.configs.settings).
    if name == "settings":
        return sys.modules["aana.configs.settings"].settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
