"""The pgqueuer application the queue benchmark runs, as pgqueuer's users run it.

    python bench_pgqueuer_app.py   # one consumer: pgqueuer.run(..., batch_size=10)

That is what ``pgq run bench_pgqueuer_app:create_pgqueuer --batch-size 10`` does, minus
its console logger: with typer 0.29, ``pgq run`` of pgqueuer 1.6.0 fails before starting
(``AttributeError: 'str' object has no attribute 'name'`` in ``setup_fancy_logger``).
asyncpg, pgqueuer's recommended driver, reads the database from the environment
(``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE``).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pgqueuer
from pgqueuer import AsyncpgDriver, Job, PgQueuer


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect()
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    try:
        yield pgq
    finally:
        await connection.close()


if __name__ == "__main__":
    # SIGTERM / SIGINT stop the consumer, as with ``pgq run``.
    asyncio.run(pgqueuer.run(create_pgqueuer, batch_size=10))
