"""The application the multi-process tests run workers of."""

import os
import signal
import time
from pathlib import Path

from aana.sdk import AanaSDK

app = AanaSDK(name="queue-test")


def _record(data):
    folder = os.environ.get("AANA_TEST_RECORD")
    if folder:
        with (Path(folder) / f"{os.getpid()}.txt").open("a") as record:
            record.write(f"{data['n']}\n")


@app.task("record")
def record(data):
    _record(data)
    return data["n"]


@app.task("nap")
def nap(data):
    _record(data)
    time.sleep(data.get("seconds", 0.2))
    return data["n"]


@app.task("die")
def die(data):
    _record(data)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task("modules")
def modules(data):
    """Which of the command line's modules this worker process has imported.

    Also the ORM and the settings (pydantic): a worker process of ``--processes N`` is
    handed its options and database, and runs the queue on SQLAlchemy Core.
    """
    import sys

    names = ("aana.cli", "aana.tasks.cli", "click", "alembic", "sqlalchemy.orm", "pydantic")
    names += ("aana.configs", "aana.storage.models")
    return {name: name in sys.modules for name in names}
