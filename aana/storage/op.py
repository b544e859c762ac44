"""The Alembic integration: configuration, the migration environment, upgrades."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from sqlalchemy import JSON

from aana.storage.dialects import utcnow
from aana.storage.models.base import BaseEntity
from aana.storage.types import UtcDateTime

if TYPE_CHECKING:
    from aana.configs.settings import Settings

MIGRATIONS_PATH = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings, root_path: Path | str | None = None) -> Config:
    """An Alembic ``Config`` for the configured database, without any .ini file.

    Args:
        settings: Settings whose ``db_config`` names the database.
        root_path: Another alembic tree (with ``env.py`` and ``versions/``) to use
            instead of the package's.

    """
    config = Config()
    config.set_main_option("script_location", str(Path(root_path or MIGRATIONS_PATH)))
    config.attributes["engine"] = settings.db_config.get_engine()
    return config


def run_alembic_migrations(settings: Settings, root_path: Path | str | None = None) -> None:
    """Upgrade the configured database to the newest revision; a no-op when it is there."""
    command.upgrade(alembic_config(settings, root_path), "heads")


def render_item(kind: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """Render aana's column types and defaults portably in generated migrations."""
    if kind == "type" and isinstance(item, UtcDateTime):
        return "aana.storage.types.UtcDateTime()"
    if kind == "type" and isinstance(item, JSON) and getattr(item, "_variant_mapping", None):
        return "aana.storage.types.JsonType"
    if kind == "server_default" and isinstance(getattr(item, "arg", None), utcnow):
        return "aana.storage.dialects.utcnow()"
    return False


def run_migrations_in_context(context: EnvironmentContext) -> None:
    """The body of ``env.py``: run the pending migrations, each in its own transaction."""
    engine = context.config.attributes["engine"]
    options: dict[str, Any] = {
        "target_metadata": BaseEntity.metadata,
        "render_as_batch": engine.dialect.name == "sqlite",
        "transaction_per_migration": True,
        "compare_type": True,
        "render_item": render_item,
    }
    with engine.connect() as connection:
        context.configure(connection=connection, **options)
        context.run_migrations()
        connection.commit()
