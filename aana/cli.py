"""The ``aana`` command line: a thin layer over ``aana.sdk`` and ``aana.storage.op``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from alembic.util import CommandError

from aana.configs.settings import Settings
from aana.exceptions.migrations import MigrationException
from aana.storage import op
from aana.tasks.cli import AppPathUsageError, load_app, tasks, worker


def _target(app_path: str | None) -> tuple[Settings, op.AppMigrations | None]:
    """The settings and the application's migrations that a command works on."""
    if app_path is None:
        from aana.configs.settings import settings

        return settings, None
    app = load_app(app_path)
    return app.settings, app.migrations


@contextmanager
def _reported() -> Iterator[None]:
    """Show migration errors as one line and a non-zero exit, not as a traceback."""
    try:
        yield
    except (MigrationException, CommandError) as error:
        raise click.ClickException(str(error)) from error


@click.group()
def main() -> None:
    """Manage an aana application's database."""


@main.command()
@click.argument("app_path", required=False)
def migrate(app_path: str | None) -> None:
    """Apply the package's migrations, then the application's ones.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    with _reported():
        if app_path is None:
            op.run_alembic_migrations(_target(None)[0])
        else:
            load_app(app_path).migrate()
    click.echo("Database is up to date.")


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
    with _reported():
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
    with _reported():
        lines = op.current_revisions(*_target(app_path))
    click.echo("\n".join(lines) if lines else "No migration applied yet.")


@main.command()
@click.argument("app_path", required=False)
def history(app_path: str | None) -> None:
    """List the known revisions, newest first.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    with _reported():
        click.echo("\n".join(op.history(*_target(app_path))))


@main.command()
@click.argument("app_path")
@click.argument("revision")
def downgrade(app_path: str, revision: str) -> None:
    """Downgrade to REVISION: an id, LABEL@-1 (one step back) or LABEL@base (all).

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    settings, app = _target(app_path)
    with _reported():
        op.downgrade(settings, revision, app)
    click.echo(f"Database downgraded to {revision}.")


@main.command()
@click.argument("app_path", required=False)
def check(app_path: str | None) -> None:
    """Exit non-zero, saying what differs, unless the models match the migrations.

    APP_PATH: module:attribute of your AanaSDK, e.g. myapp.main:aana_app.
    """
    with _reported():
        differences = op.compare_with_models(*_target(app_path))
    if differences:
        click.echo("Models and migrations differ:", err=True)
        for difference in differences:
            click.echo(f"  {difference}", err=True)
        sys.exit(1)
    click.echo("Models and migrations agree.")


main.add_command(worker)
main.add_command(tasks)

if __name__ == "__main__":  # pragma: no cover
    main()
