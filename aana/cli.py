"""The ``aana`` command line: a thin layer over ``aana.sdk`` and ``aana.storage.op``."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from aana.configs.settings import Settings
from aana.exceptions.config import ConfigurationError, MissingConfigKeyError
from aana.exceptions.core import BaseException as AanaException
from aana.log_config import FORMAT_VARIABLE, FORMATS, LEVEL_VARIABLE, LEVELS, configure_logging
from aana.storage import op
from aana.tasks.cli import AppPathUsageError, load_app, tasks, worker

USAGE_EXIT_CODE = 2
"""Exit code of a usage or configuration error (as click's own usage errors)."""


class CommandFailed(click.ClickException):
    """An error shown as one ``Error: ...`` line; exit code 1."""


class ConfigurationFailed(CommandFailed):
    """A configuration error shown as one ``Error: ...`` line; exit code 2, as usage errors."""

    exit_code = USAGE_EXIT_CODE


def _target(app_path: str | None) -> tuple[Settings, op.AppMigrations | None]:
    """The settings and the application's migrations that a command works on."""
    if app_path is None:
        from aana.configs.settings import settings

        return settings, None
    app = load_app(app_path)
    return app.settings, app.migrations


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class AanaGroup(click.Group):
    """The ``aana`` group: aana's exceptions become one ``Error: ...`` line and an exit code.

    Configuration errors exit 2 (like usage errors), other failures 1. ``--verbose``
    also prints the traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, reporting aana's exceptions as one line."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except (ConfigurationError, MissingConfigKeyError) as error:
            self._show_traceback(ctx)
            raise ConfigurationFailed(str(error)) from error
        except (AanaException, CommandError) as error:
            self._show_traceback(ctx)
            raise CommandFailed(str(error)) from error
        except SQLAlchemyError as error:
            # Not translated by a repository (a migration command, for example).
            self._show_traceback(ctx)
            raise CommandFailed(f"the database refused: {_one_line(error)}") from error

    @staticmethod
    def _show_traceback(ctx: click.Context) -> None:
        if ctx.params.get("verbose"):
            traceback.print_exc(file=sys.stderr)


@click.group(cls=AanaGroup)
@click.version_option(package_name="aana-storage", prog_name="aana")
@click.option("--verbose", "-v", is_flag=True, help="Show the traceback of an error.")
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    envvar=LEVEL_VARIABLE,
    default="INFO",
    show_default=True,
    help=f"Least severe log records shown [{LEVEL_VARIABLE}].",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS, case_sensitive=False),
    envvar=FORMAT_VARIABLE,
    default="text",
    show_default=True,
    help=f"text (time, level, logger, process, message) or json [{FORMAT_VARIABLE}].",
)
def main(verbose: bool, log_level: str, log_format: str) -> None:
    """Manage an aana application's database and its task queue.

    The database comes from DB_CONFIG (a URL or JSON), or from the application of APP_PATH.
    Errors are one line (exit 1; 2 for usage and configuration); --verbose adds the traceback.
    """
    configure_logging(log_level, log_format)


@main.command()
@click.argument("app_path", required=False)
@click.option(
    "--sql",
    "as_sql",
    is_flag=True,
    help="Print the SQL that migrates an empty database instead (offline: no connection).",
)
def migrate(app_path: str | None, as_sql: bool) -> None:
    """Apply the package's migrations, then the application's ones.

    Prints each revision applied, or that there was nothing to do.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    settings, migrations = _target(app_path)
    if as_sql:
        click.echo(op.offline_sql(settings, migrations), nl=False)
        return
    if app_path is not None and load_app(app_path).migration_func is not None:
        load_app(app_path).migrate()
        click.echo("Ran the application's migration_func.")
        return
    applied: list[str] = []
    op.run_alembic_migrations(settings, app=migrations, applied=applied)
    for line in applied:
        click.echo(f"Applied {line}")
    click.echo(
        f"Database is up to date ({len(applied)} revision(s) applied)."
        if applied
        else "Database is up to date: nothing to do."
    )


@main.command()
@click.argument("app_path")
@click.option("-m", "--message", required=True, help="What the revision does, in a sentence.")
@click.option(
    "--autogenerate/--empty",
    default=False,
    help="Fill the revision with what the models change (default: an empty revision).",
)
def revision(app_path: str, message: str, autogenerate: bool) -> None:
    """Write the application's next migration into its migrations folder.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    settings, app = _target(app_path)
    if app is None:
        raise AppPathUsageError(
            f"{app_path!r} has no migrations folder: pass migrations_path= to it"
        )
    path = op.generate_revision(settings, app, message, autogenerate=autogenerate)
    if path is None:
        click.echo("No changes in the application's models; no revision written.")
    else:
        click.echo(f"Wrote {path}")


@main.command()
@click.argument("app_path", required=False)
def current(app_path: str | None) -> None:
    """Show the revisions the database is at.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    lines = op.current_revisions(*_target(app_path))
    click.echo("\n".join(lines) if lines else "No migration applied yet.")


@main.command()
@click.argument("app_path", required=False)
def history(app_path: str | None) -> None:
    """List the known revisions, newest first.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    click.echo("\n".join(op.history(*_target(app_path))))


@main.command()
@click.argument("app_path", required=False)
def heads(app_path: str | None) -> None:
    """Show the newest revision of each branch of the migrations.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    click.echo("\n".join(op.heads(*_target(app_path))))


@main.command()
@click.argument("app_path")
@click.argument("revision")
def downgrade(app_path: str, revision: str) -> None:
    """Downgrade to REVISION: an id, LABEL@-1 (one step back) or LABEL@base (all).

    Prints the revisions the database is at afterwards.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    settings, migrations = _target(app_path)
    reached = op.downgrade(settings, revision, migrations)
    if reached:
        click.echo("Database downgraded to:")
        for line in reached:
            click.echo(f"  {line}")
    else:
        click.echo("Database downgraded to base: no migration applied.")


@main.command()
@click.argument("app_path", required=False)
def check(app_path: str | None) -> None:
    """Exit 1 unless the database is at the newest revisions and they match the models.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    settings, migrations = _target(app_path)
    failed = False
    pending = op.pending_revisions(settings, migrations)
    if pending:
        failed = True
        click.echo("The database is behind the migrations; pending revisions:", err=True)
        for line in pending:
            click.echo(f"  {line}", err=True)
        click.echo(f"Apply them with: aana migrate {app_path or ''}".rstrip(), err=True)
    differences = op.compare_with_models(settings, migrations)
    if differences:
        failed = True
        click.echo("Models and migrations differ:", err=True)
        for difference in differences:
            click.echo(f"  {difference}", err=True)
    if failed:
        sys.exit(1)
    click.echo("The database is at the newest revisions; models and migrations agree.")


@main.command()
@click.argument("app_path")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; the dashboard has no auth of its own: keep it local.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def dashboard(app_path: str, host: str, port: int) -> None:
    """Serve the web dashboard, the task API and /metrics of APP_PATH with uvicorn.

    The dashboard is at /, the JSON API at /api/tasks (docs at /api/docs), Prometheus
    metrics at /metrics. Needs the api extra: pip install 'aana-storage[api]'.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    app = load_app(app_path)
    try:
        import uvicorn

        from aana.api.server import dashboard_app
    except ImportError as error:
        raise CommandFailed(
            f"the dashboard needs the api extra ({error.name} is missing): "
            "pip install 'aana-storage[api]'"
        ) from error
    uvicorn.run(dashboard_app(app), host=host, port=port, log_config=None)


main.add_command(worker)
main.add_command(tasks)

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="aana")
