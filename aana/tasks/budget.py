"""The connection budget: whether a worker fits in PostgreSQL's ``max_connections``.

Each worker process holds up to ``pool_size + max_overflow`` pooled connections plus one
for its notification listener. ``aana worker`` checks at start what the server has
free and warns, without refusing to start: other workers may stop, and a warning in the
log beats ``too many clients already`` in the middle of the night.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from aana.configs.db import DbSettings
from aana.exceptions.core import BaseException as AanaException
from aana.storage.pooling import behind_pooler

logger = logging.getLogger(__name__)

_USED = (
    "SELECT current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int, "
    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
)


@dataclass(frozen=True)
class Budget:
    """What a worker needs and what the server has.

    Attributes:
        needed: Connections the worker may open (all its processes).
        max_connections: The server's ``max_connections``.
        reserved: The server's ``superuser_reserved_connections``.
        in_use: Client connections open now (this check's own included).

    """

    needed: int
    max_connections: int
    reserved: int
    in_use: int

    @property
    def free(self) -> int:
        """Connections still open to ordinary users, counting this check's as free."""
        return self.max_connections - self.reserved - self.in_use + 1

    @property
    def fits(self) -> bool:
        """Whether the worker can open all the connections it may need."""
        return self.needed <= self.free


def connections_per_process(db: DbSettings, listen: bool) -> int:
    """The most connections one worker process opens: its pool, plus its listener."""
    return db.pool_size + db.max_overflow + (1 if listen else 0)


def check_budget(db: DbSettings, processes: int, listen: bool) -> Budget | None:
    """Compare a worker of ``processes`` processes with the server; warn if it cannot fit.

    Returns:
        The figures, or None when there is nothing to check: SQLite, or PostgreSQL
        reached through a transaction pooler (which bounds the server's connections).

    """
    if db.datastore_type != "postgresql":
        return None
    engine = db.get_engine()
    try:
        if behind_pooler(engine):
            return None
        with engine.connect() as connection:
            max_connections, reserved, in_use = connection.exec_driver_sql(_USED).one()
    except (AanaException, SQLAlchemyError) as error:  # advisory: never stops a worker
        logger.info("connection budget not checked: %s", str(error).strip().splitlines()[0])
        return None
    budget = Budget(
        processes * connections_per_process(db, listen),
        int(max_connections),
        int(reserved),
        int(in_use),
    )
    if not budget.fits:
        logger.warning(
            "this worker may open %d connections (%d process(es) x (pool_size %d + "
            "max_overflow %d%s)) but PostgreSQL has %d free (max_connections %d, %d "
            "reserved, %d in use): lower --processes or pool_size/max_overflow, raise "
            "max_connections, or put PgBouncer in front (see docs/deployment.md)",
            budget.needed,
            processes,
            db.pool_size,
            db.max_overflow,
            " + 1 listener" if listen else "",
            budget.free,
            budget.max_connections,
            budget.reserved,
            budget.in_use,
        )
    return budget
