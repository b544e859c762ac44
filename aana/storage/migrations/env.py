"""Alembic environment of aana: runs inside ``aana.storage.op``, never from a .ini file."""

from alembic import context

from aana.storage.op import run_migrations_in_context

run_migrations_in_context(context)  # type: ignore[arg-type]
