"""Core statements compiled once, to run on a driver's own API.

The queue's hottest statements run on the driver (``queue_driver`` for psycopg,
``queue_driver_sqlite`` for ``sqlite3``) with the SQL that SQLAlchemy compiles for the
engine's dialect. ``DriverStatement`` compiles a statement once and converts each value
as SQLAlchemy would before sending it: by its bound type's processor for the dialect
(which also checks it, for aana's column types). ``ResultRows`` converts the rows it
returns as SQLAlchemy would: by each column type's result processor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Dialect, Update
from sqlalchemy.types import TypeEngine

Converter = Callable[[Any], Any] | None
"""A type's bind or result processor for a dialect (None: the value goes as it is)."""

Column = ColumnElement[Any]


def bind_converter(type_: TypeEngine[Any], dialect: Dialect) -> Converter:
    """How SQLAlchemy converts a value bound to ``type_`` for ``dialect`` (checks included)."""
    return type_.dialect_impl(dialect).bind_processor(dialect)


def convert(process: Converter, value: Any) -> Any:
    """``value`` as ``process`` makes it (None included, as SQLAlchemy passes it)."""
    return value if process is None else process(value)


class DriverStatement:
    """``statement`` compiled for ``dialect``: its SQL and how to convert its values.

    Attributes:
        sql: The SQL, in the driver's parameter style.

    Raises:
        RuntimeError: A parameter of the statement is rendered at execution time (an
            expanding ``IN``): its SQL would depend on the values.

    """

    def __init__(self, statement: Update, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise RuntimeError("the statement has a parameter rendered at execution time")
        self.sql = compiled.string
        self._positions = compiled.positiontup  # None for a named parameter style
        self._converters: dict[str, Converter] = {
            name: bind_converter(bind.type, dialect) for name, bind in compiled.binds.items()
        }
        self._fixed = {
            name: convert(self._converters.get(name), value)
            for name, value in compiled.params.items()
        }

    def parameters(self, given: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The values to send: ``given`` converted, the others fixed at compile time.

        A tuple in the statement's order for a positional parameter style, else a dict.

        Raises:
            Exception: What a column type raises for a value it refuses.

        """
        values = dict(self._fixed)
        for name, value in given.items():
            values[name] = convert(self._converters.get(name), value)
        if self._positions is None:
            return values
        return tuple(values[name] for name in self._positions)


class CompiledStatements:
    """``DriverStatement``s for one dialect, each statement compiled on first use.

    ``queue_sql`` builds one statement per kind of request and keeps it, so a few are
    compiled in all; they are looked up by the statement object.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._compiled: dict[Update, DriverStatement] = {}

    def __getitem__(self, statement: Update) -> DriverStatement:
        """``statement`` compiled (a race compiles it twice, harmlessly)."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = DriverStatement(statement, self._dialect)
        return compiled


class ResultRows:
    """Converts the rows a driver returned for ``columns`` as SQLAlchemy would for ``dialect``."""

    def __init__(self, columns: Sequence[Column], dialect: Dialect) -> None:
        self._converters: list[Converter] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]

    def __call__(self, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Each row's values, converted by their column's type."""
        converters = self._converters
        return [
            tuple(convert(process, value) for process, value in zip(converters, row, strict=True))
            for row in rows
        ]
