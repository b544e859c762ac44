"""Statements compiled once for a driver's own API (``aana.storage.compiled``)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Table, Update, bindparam, create_engine, update
from sqlalchemy.engine import Dialect

from aana.exceptions.db import InvalidInputException
from aana.storage.compiled import DriverStatement
from aana.storage.models.task import TaskEntity

TASKS: Table = TaskEntity.__table__  # type: ignore[assignment]


def dialect(url: str) -> Dialect:
    return create_engine(url).dialect  # no connection is made


def rename() -> Update:
    """An UPDATE with a value given at each call and one fixed in the statement."""
    return (
        update(TASKS)
        .where(TASKS.c.id == bindparam("task_id"))
        .values(dedupe_key=bindparam("key"), priority=7)
    )


def test_driver_statement__positional_values_in_the_statements_order() -> None:
    statement = DriverStatement(rename(), dialect("sqlite://"))
    task_id = uuid.uuid4()

    values = statement.parameters({"task_id": task_id, "key": "k"})

    assert statement.sql.count("?") == 3
    # Each value as its column type binds it on SQLite: the UUID as 32 hex digits.
    assert values == (7, "k", task_id.hex)  # SET in the table's column order, then WHERE


def test_driver_statement__named_values_for_psycopg() -> None:
    statement = DriverStatement(rename(), dialect("postgresql+psycopg://"))
    task_id = uuid.uuid4()

    values = statement.parameters({"task_id": task_id, "key": None})

    assert "%(task_id)s" in statement.sql
    assert values == {"task_id": task_id, "key": None, "priority": 7}


def test_driver_statement__a_refused_value_raises_what_its_column_type_raises() -> None:
    statement = DriverStatement(rename(), dialect("sqlite://"))

    with pytest.raises(InvalidInputException, match="NUL"):
        statement.parameters({"task_id": uuid.uuid4(), "key": "a\x00b"})


def test_driver_statement__refuses_sql_that_depends_on_the_values() -> None:
    expanding = update(TASKS).where(TASKS.c.id.in_(bindparam("ids", expanding=True)))

    with pytest.raises(RuntimeError, match="rendered at execution time"):
        DriverStatement(expanding.values(priority=1), dialect("sqlite://"))
