"""Running several worker processes: start them, forward signals, wait for them.

Each worker process runs this module (``python -m aana.tasks.supervisor NAME ...``): it
loads the application with ``AanaSDK.from_path`` and imports nothing of the command line.
The supervisor of ``aana worker --processes N`` runs it too
(``python -m aana.tasks.supervisor --supervise ...``, which the command replaces itself
with): it only starts and waits for processes, so it imports neither SQLAlchemy nor the
application, and stays a small process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from aana.log_config import configure_logging

if TYPE_CHECKING:
    from aana.storage.engine import EngineSpec
    from aana.tasks.worker import Worker, WorkerOptions

MODULE = "aana.tasks.supervisor"  # not __name__, which is "__main__" under python -m
SUPERVISE = "--supervise"
OPTIONS_VARIABLE = "AANA_WORKER_OPTIONS"
"""Where a supervisor and its workers find their options (JSON): not in the command line,
which every user of the machine can read, since ``listen_url`` may hold a password."""
DATABASE_VARIABLE = "AANA_WORKER_DATABASE"
"""Where they find their database (an ``EngineSpec`` as JSON, password included), for
the same reason: with it and the options, a worker process never loads the settings."""

SAME_SIGNAL = 0.5
"""Seconds after a stop signal within which another is the same request, not a second:
``timeout``, a terminal or systemd signal the whole process group, and the supervisor
forwards the signal it got as well."""

logger = logging.getLogger(MODULE)


def run_worker(app_path: str, options: WorkerOptions, database: EngineSpec | None = None) -> int:
    """Load the application at ``app_path`` and run one worker in this process.

    It works on ``database``, by default the application's ``settings.db_config``.

    Returns:
        0 once the worker stopped; 1 if a burst worker could not reach its queue (the
        reason is logged on one line).

    """
    from aana.sdk import AanaSDK
    from aana.tasks.worker import Worker

    return _run(Worker(AanaSDK.from_path(app_path), options, database))


def _run(worker: Worker) -> int:
    """Run ``worker`` until it stops: 0, or 1 if it could not reach its queue."""
    from aana.tasks.errors import QueueUnavailableError

    try:
        worker.run()
    except QueueUnavailableError as error:
        logger.error("worker stopped: %s", error)
        return 1
    return 0


def _child(name: str, app_path: str, options: WorkerOptions, database: EngineSpec) -> int:
    from aana.sdk import AanaSDK
    from aana.tasks.worker import Worker

    # Ctrl-C reaches the whole process group; the parent forwards it once, as SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(process_name=name)  # as the command line: AANA_LOG_LEVEL/FORMAT
    worker = Worker(AanaSDK.from_path(app_path), options, database)
    parent = os.getppid()

    def watch_parent() -> None:
        # A supervisor killed with SIGKILL forwards nothing: stop when orphaned.
        while not worker.stopping:
            if os.getppid() != parent:
                logger.warning("supervisor gone: stopping")
                worker.stop()
                return
            time.sleep(0.5)

    threading.Thread(target=watch_parent, name="aana-parent-watch", daemon=True).start()
    return _run(worker)


def run_workers(app_path: str, processes: int, options: WorkerOptions, database: EngineSpec) -> int:
    """Run ``processes`` workers (this process itself when there is one).

    SIGTERM or SIGINT is passed on to every worker as SIGTERM: they stop claiming and
    finish their running tasks; a second signal makes them hand those back at once.

    Returns:
        0 if every worker exited cleanly, else 1.

    """
    if processes <= 1:
        return run_worker(app_path, options, database)
    return supervise(app_path, processes, options.to_json(), database.to_json())


def become_supervisor(
    app_path: str, processes: int, options: WorkerOptions, database: EngineSpec
) -> None:
    """Replace this process with a small one that runs ``processes`` workers.

    The command line has imported click, Alembic, SQLAlchemy and the application by the
    time it knows the options; ``exec`` drops all that (the process id stays, so signals
    sent to it still reach the supervisor). Does not return.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()  # flushes every handler
    os.environ[OPTIONS_VARIABLE] = options.to_json()
    os.environ[DATABASE_VARIABLE] = database.to_json()
    argv = [sys.executable, "-m", MODULE, SUPERVISE, str(processes), app_path]
    os.execv(sys.executable, argv)  # noqa: S606 (our own interpreter, no shell)


def _for_process(encoded_options: str, n: int) -> str:
    """The options of worker process ``n``: its metrics, if any, on the ``n``-th next port."""
    options = json.loads(encoded_options)
    if options.get("metrics_port") is None:
        return encoded_options
    return json.dumps({**options, "metrics_port": options["metrics_port"] + n})


def supervise(app_path: str, processes: int, encoded_options: str, encoded_database: str) -> int:
    """Start ``processes`` worker processes, forward signals to them, wait for them all.

    With a metrics port, worker ``n`` serves its metrics on that port plus ``n``.
    """
    names = [f"aana-worker-{n}" for n in range(processes)]
    # ``python -m`` makes the current directory importable, as for the command line.
    children = [
        subprocess.Popen(
            [sys.executable, "-m", MODULE, name, app_path],
            env={
                **os.environ,
                OPTIONS_VARIABLE: _for_process(encoded_options, n),
                DATABASE_VARIABLE: encoded_database,
            },
        )
        for n, name in enumerate(names)
    ]

    stopping = False
    first_at: list[float] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        now = time.monotonic()
        if first_at and now - first_at[0] < SAME_SIGNAL:
            return  # the same request delivered twice: forwarded once
        first_at[:] = [now]
        logger.info("signal %d: stopping %d worker process(es)", signum, len(children))
        for child in children:
            if child.poll() is None:
                child.terminate()

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [child.wait() for child in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping:
        # A worker still starting when asked to stop dies of the SIGTERM: as asked.
        codes = [0 if code == -signal.SIGTERM else code for code in codes]
    for name, code in zip(names, codes, strict=True):
        if code != 0:
            logger.error("%s exited with code %s", name, code)
    return 1 if any(codes) else 0


def main(argv: list[str]) -> int:
    """Run a supervisor or one of its workers, as ``argv`` says.

    ``--supervise PROCESSES APP_PATH`` is a supervisor (see ``become_supervisor``);
    ``NAME APP_PATH`` one of its workers. The options are in ``AANA_WORKER_OPTIONS``,
    the database in ``AANA_WORKER_DATABASE``.
    """
    encoded = os.environ.pop(OPTIONS_VARIABLE)
    encoded_database = os.environ.pop(DATABASE_VARIABLE)
    if argv[0] == SUPERVISE:
        _, processes, app_path = argv
        configure_logging()  # as the command line: AANA_LOG_LEVEL/FORMAT
        return supervise(app_path, int(processes), encoded, encoded_database)
    from aana.storage.engine import EngineSpec
    from aana.tasks.worker import WorkerOptions

    name, app_path = argv
    options = WorkerOptions.from_json(encoded)
    return _child(name, app_path, options, EngineSpec.from_json(encoded_database))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
