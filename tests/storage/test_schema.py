"""The migrations produce exactly the models' schema, on every backend."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aana.storage.models import BaseEntity


def test_migrated_schema__autogenerate_finds_no_difference(db):
    with db.get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, BaseEntity.metadata) == []
