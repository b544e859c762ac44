"""The Alembic integration: configuration, the migration environment and the commands.

The package's migrations (branch ``aana``) and an application's migrations (in the
application's own folder, on a branch of its own that depends on the package's) are
version locations of one Alembic tree, whose ``env.py`` lives in the package. Every
command that reads the version table to change the schema holds the migration lock
(``dialects.exclusive_migrations``) from that read until it ends.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory

from aana.exceptions.migrations import MigrationException, UnknownRevisionException
from aana.storage.dialects import exclusive_migrations, utcnow
from aana.storage.models import PACKAGE_TABLES, BaseEntity
from aana.storage.types import CheckedJson, CheckedType, UtcDateTime

if TYPE_CHECKING:
    from aana.configs.settings import Settings

MIGRATIONS_PATH = Path(__file__).parent / "migrations"
PACKAGE_VERSIONS = MIGRATIONS_PATH / "versions"
PACKAGE_BRANCH = "aana"


@dataclass(frozen=True)
class AppMigrations:
    """Where an application keeps its migrations.

    Attributes:
        label: Branch label given to the application's first revision.
        path: The folder of the application's revisions (created by its first revision).

    """

    label: str
    path: Path


def alembic_config(
    settings: Settings, root_path: Path | str | None = None, app: AppMigrations | None = None
) -> Config:
    """An Alembic ``Config`` for the configured database, without any .ini file.

    Args:
        settings: Settings whose ``db_config`` names the database.
        root_path: Another alembic tree (with ``env.py`` and ``versions/``) to use
            instead of the package's.
        app: An application whose migrations run after the package's.

    """
    config = Config()
    config.set_main_option("script_location", _escaped(Path(root_path or MIGRATIONS_PATH)))
    if root_path is None:
        locations = [PACKAGE_VERSIONS, *([app.path] if app else [])]
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", os.pathsep.join(map(_escaped, locations)))
    config.attributes["engine"] = settings.db_config.get_engine()
    return config


def _escaped(path: Path) -> str:
    # Config values go through configparser interpolation, where "%" is special.
    return str(path).replace("%", "%%")


@contextmanager
def _locked(config: Config, keep: bool) -> Iterator[Config]:
    """Give the config one connection holding the migration lock, for all its commands.

    Args:
        config: The config to run commands with.
        keep: Commit the work; otherwise roll all of it back (a dry run).

    """
    with config.attributes["engine"].connect() as connection, exclusive_migrations(connection):
        if not keep and not connection.in_transaction():
            connection.begin()  # one transaction to roll everything back at the end
        config.attributes["connection"] = connection
        yield config
        if keep and connection.in_transaction():
            connection.commit()
        elif not keep:
            connection.rollback()


def run_alembic_migrations(
    settings: Settings,
    root_path: Path | str | None = None,
    app: AppMigrations | None = None,
    *,
    applied: list[str] | None = None,
) -> None:
    """Upgrade the configured database to the newest revisions; a no-op when it is there.

    The package's migrations run first, then the application's (if ``app`` is given),
    in dependency order. On PostgreSQL each migration runs in its own transaction; on
    SQLite the whole run is one transaction. The ``env.py`` of a ``root_path`` tree must
    migrate through ``config.attributes["connection"]``, which holds the migration lock.

    Args:
        settings: Settings whose ``db_config`` names the database.
        root_path: Another alembic tree to use instead of the package's.
        app: An application whose migrations run after the package's.
        applied: Filled with one line per revision applied, oldest first (*ours*).

    """
    with _locked(alembic_config(settings, root_path, app), keep=True) as config:
        _record_steps(config, applied)
        command.upgrade(config, "heads")


def downgrade(settings: Settings, revision: str, app: AppMigrations | None = None) -> list[str]:
    """Downgrade to ``revision`` (an id, ``label@-1``, ``label@base`` ...).

    Returns:
        The revisions the database is at afterwards, one line each (empty: none).

    """
    with _locked(alembic_config(settings, app=app), keep=True) as config:
        command.downgrade(config, revision)
        script = ScriptDirectory.from_config(config)
        heads = _known_heads(MigrationContext.configure(config.attributes["connection"]), script)
        return [_line(script.get_revision(head)) for head in heads]


def offline_sql(settings: Settings, app: AppMigrations | None = None) -> str:
    """The SQL that migrates an empty database to the newest revisions (*ours*).

    For a DBA to review or run: nothing connects to the database; the SQL is for the
    configured database's dialect.
    """
    config = alembic_config(settings, app=app)
    buffer = io.StringIO()
    config.output_buffer = buffer
    config.attributes["offline_url"] = config.attributes["engine"].url
    command.upgrade(config, "heads", sql=True)
    return buffer.getvalue()


def heads(settings: Settings, app: AppMigrations | None = None) -> list[str]:
    """The newest revisions of the migrations (one per branch), one line each (*ours*)."""
    script = ScriptDirectory.from_config(alembic_config(settings, app=app))
    return [_line(script.get_revision(head)) for head in script.get_heads()]


def pending_revisions(settings: Settings, app: AppMigrations | None = None) -> list[str]:
    """The revisions the database has not had yet, oldest first, one line each (*ours*).

    Raises:
        UnknownRevisionException: The database is at a revision the code does not know.

    """
    script, done = _applied(settings, app)
    pending = [revision for revision in script.walk_revisions() if revision.revision not in done]
    return [_line(revision) for revision in reversed(pending)]


def _applied(settings: Settings, app: AppMigrations | None) -> tuple[ScriptDirectory, set[str]]:
    """The migrations' scripts, and the revisions the database has had (heads and ancestors).

    Raises:
        UnknownRevisionException: The database is at a revision the code does not know.

    """
    config = alembic_config(settings, app=app)
    script = ScriptDirectory.from_config(config)
    with config.attributes["engine"].connect() as connection:
        heads = _known_heads(MigrationContext.configure(connection), script)
    applied: set[str] = set()
    for head in heads:
        applied |= _ancestors(script, head)
    return script, applied


def _line(revision: Script | None) -> str:
    if revision is None:
        return "base"
    return revision.cmd_format(verbose=False, include_branches=True, include_doc=True)


def _record_steps(config: Config, applied: list[str] | None) -> None:
    """Have ``env.py`` add one line per migration step it runs to ``applied``."""
    if applied is None:
        return

    def on_version_apply(*, step: Any, **_: Any) -> None:
        applied.append(_line(step.up_revision))

    options = config.attributes.setdefault("configure_options", {})
    options["on_version_apply"] = on_version_apply


def generate_revision(
    settings: Settings, app: AppMigrations, message: str, autogenerate: bool = True
) -> Path | None:
    """Write the application's next revision into its migrations folder.

    With ``autogenerate`` the revision holds what the application's models add or change
    compared with its migrations; the package's tables are never part of it. The
    comparison runs against the configured database, migrated to the newest revisions
    inside a transaction that is rolled back, so the database is left as it was.

    Returns:
        The new file, or None when autogenerate found nothing to do.

    """
    with _locked(alembic_config(settings, app=app), keep=False) as config:
        script = ScriptDirectory.from_config(config)
        app_head = _app_head(script, app)
        package_head = script.revision_map.get_revision(f"{PACKAGE_BRANCH}@head")
        needs_package_head = package_head is not None and (
            app_head is None or package_head.revision not in _ancestors(script, app_head)
        )
        if autogenerate:
            command.upgrade(config, "heads")
            config.attributes["configure_options"] = {
                **_scope_options(frozenset(BaseEntity.metadata.tables) - PACKAGE_TABLES),
                "process_revision_directives": _skip_empty,
            }
        written = command.revision(
            config,
            message,
            autogenerate=autogenerate,
            head=app_head or "base",
            branch_label=None if app_head else _branch_label(app),
            version_path=str(app.path),
            depends_on=package_head.revision if package_head and needs_package_head else None,
        )
    if not isinstance(written, Script):
        return None
    (app.path / "__init__.py").touch()
    return Path(written.path)


def compare_with_models(settings: Settings, app: AppMigrations | None = None) -> list[str]:
    """What differs between the models and the schema the migrations build.

    Without ``app`` only the package's tables are compared. The database is migrated to
    the newest revisions inside a transaction that is rolled back, so it is left as it was.

    Returns:
        One line per difference; empty when models and migrations agree.

    """
    tables = frozenset(BaseEntity.metadata.tables) if app else PACKAGE_TABLES
    with _locked(alembic_config(settings, app=app), keep=False) as config:
        command.upgrade(config, "heads")
        context = MigrationContext.configure(
            config.attributes["connection"],
            opts={"compare_type": True, "render_item": render_item, **_scope_options(tables)},
        )
        return [_describe(diff) for diff in compare_metadata(context, BaseEntity.metadata)]


def current_revisions(settings: Settings, app: AppMigrations | None = None) -> list[str]:
    """The revisions the database is at, one line each; empty for an unmigrated database."""
    config = alembic_config(settings, app=app)
    script = ScriptDirectory.from_config(config)
    with config.attributes["engine"].connect() as connection:
        heads = _known_heads(MigrationContext.configure(connection), script)
    return [
        script.get_revision(head).cmd_format(verbose=False, include_branches=True, include_doc=True)
        for head in heads
    ]


def missing_package_revisions(settings: Settings, app: AppMigrations | None = None) -> list[str]:
    """The package's revisions the database has not had yet, newest first.

    Raises:
        UnknownRevisionException: The database is at a revision the code does not know.

    """
    script, applied = _applied(settings, app)
    package = script.iterate_revisions(f"{PACKAGE_BRANCH}@head", "base")
    return [revision.revision for revision in package if revision.revision not in applied]


def history(settings: Settings, app: AppMigrations | None = None) -> list[str]:
    """Every known revision, newest first, one line each."""
    script = ScriptDirectory.from_config(alembic_config(settings, app=app))
    return [
        revision.cmd_format(
            verbose=False, include_branches=True, include_doc=True, include_parents=True
        )
        for revision in script.walk_revisions()
    ]


def _app_head(script: ScriptDirectory, app: AppMigrations) -> str | None:
    """The newest revision in the application's folder, None if it has none yet."""
    folder = app.path.resolve()
    heads = [
        revision.revision
        for revision in script.revision_map.get_revisions("heads")
        if isinstance(revision, Script) and Path(revision.path).resolve().parent == folder
    ]
    if len(heads) > 1:
        raise MigrationException(
            f"The migrations in {str(folder)!r} have several heads ({', '.join(heads)}); "
            "merge them into one before adding a revision."
        )
    return heads[0] if heads else None


def _ancestors(script: ScriptDirectory, revision: str) -> set[str]:
    """``revision`` and every revision it follows, dependencies included."""
    return {step.revision for step in script.iterate_revisions(revision, "base")}


def _branch_label(app: AppMigrations) -> str:
    if not app.label.isidentifier() or app.label == PACKAGE_BRANCH:
        raise MigrationException(
            f"The application's name {app.label!r} labels its migrations: it must be a "
            f"Python identifier other than {PACKAGE_BRANCH!r} (AanaSDK(name=...))."
        )
    return app.label


def _known_heads(context: MigrationContext, script: ScriptDirectory) -> tuple[str, ...]:
    """The database's revisions, or ``UnknownRevisionException`` if the code lacks one."""
    known = {revision.revision for revision in script.walk_revisions()}
    heads = context.get_current_heads()
    unknown = [head for head in heads if head not in known]
    if unknown:
        raise UnknownRevisionException(unknown)
    return heads


def _scope_options(tables: frozenset[str]) -> dict[str, Any]:
    """Autogenerate options that compare only ``tables``, and so never drop any other."""

    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or name in tables

    def include_object(item: Any, name: str | None, type_: str, *_: Any) -> bool:
        return type_ != "table" or name in tables

    return {"include_name": include_name, "include_object": include_object}


def _skip_empty(context: MigrationContext, _revision: Any, directives: list[Any]) -> None:
    if directives and directives[0].upgrade_ops.is_empty():
        directives[:] = []


def _describe(diff: Any) -> str:
    """One line for one difference reported by ``compare_metadata``."""
    if isinstance(diff, list):
        return "; ".join(_describe(part) for part in diff)
    kind, *details = diff
    if kind.startswith("modify_"):
        _schema, table, column, _info, old, new = details
        return f"{kind} {table}.{column}: {old!r} in the database, {new!r} in the models"
    names = [
        str(getattr(item, "name", item))
        for item in details
        if item is not None and not isinstance(item, dict)
    ]
    return f"{kind} {' '.join(names)}"


def render_item(kind: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """Render aana's column types and defaults portably in generated migrations."""
    if kind == "type" and isinstance(item, UtcDateTime):
        return "aana.storage.types.UtcDateTime()"
    if kind == "type" and isinstance(item, CheckedJson):
        return "aana.storage.types.JsonType"
    if kind == "type" and isinstance(item, CheckedType):
        # The checks are the models' business; the schema has the plain SQL type.
        return f"sa.{item.impl_instance!r}"
    if kind == "server_default" and isinstance(getattr(item, "arg", None), utcnow):
        return "aana.storage.dialects.utcnow()"
    return False


def run_migrations_in_context(context: EnvironmentContext) -> None:
    """The body of ``env.py``: run the pending migrations, each in its own transaction.

    The connection comes from the command (see ``_locked``), which holds the migration
    lock and ends the transaction; on SQLite it is one transaction for the whole run.
    """
    config = context.config
    if context.is_offline_mode():
        # ``aana migrate --sql``: SQL for the configured dialect, with no connection.
        context.configure(
            url=config.attributes["offline_url"],
            target_metadata=BaseEntity.metadata,
            literal_binds=True,
            render_as_batch=True,
            transaction_per_migration=True,
            render_item=render_item,
        )
        context.run_migrations()
        return
    context.configure(
        connection=config.attributes["connection"],
        target_metadata=BaseEntity.metadata,
        # Batch operations run as plain ALTERs on PostgreSQL, so generated revisions
        # work on both backends whichever one they were generated against.
        render_as_batch=True,
        transaction_per_migration=True,
        compare_type=True,
        render_item=render_item,
        **config.attributes.get("configure_options", {}),
    )
    if context.script is not None:
        _known_heads(context.get_context(), context.script)
    context.run_migrations()
