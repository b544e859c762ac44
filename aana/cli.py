"""The ``aana`` command line."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from aana.sdk import AanaSDK


def load_app(app_path: str) -> AanaSDK:
    """Import ``module:attribute`` and return the ``AanaSDK`` it names.

    The current directory is importable, as for ``python -m``.

    Raises:
        click.BadParameter: The path is malformed, not importable, or not an AanaSDK.

    """
    module_name, _, attribute = app_path.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(
            f"{app_path!r} is not of the form module:attribute (e.g. myapp.main:aana_app)"
        )
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise click.BadParameter(
            f"cannot import module {module_name!r} of {app_path!r}: {error}"
        ) from error
    app = getattr(module, attribute, None)
    if not isinstance(app, AanaSDK):
        found = "nothing" if app is None else f"a {type(app).__name__}"
        raise click.BadParameter(
            f"{app_path!r} must name an AanaSDK instance, but {attribute!r} in "
            f"{module_name!r} is {found}"
        )
    return app


@click.group()
def main() -> None:
    """Manage an aana application's database and task queue."""


@main.command()
@click.argument("app_path", required=False)
def migrate(app_path: str | None) -> None:
    """Upgrade the database to the newest schema (APP_PATH: module:attribute of an AanaSDK)."""
    app = load_app(app_path) if app_path else AanaSDK()
    app.migrate()
    click.echo("Database is up to date.")


from aana.tasks.cli import tasks, worker  # noqa: E402  (the commands import load_app above)

main.add_command(worker)
main.add_command(tasks)

if __name__ == "__main__":  # pragma: no cover
    main()
