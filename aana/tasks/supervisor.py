"""Running several worker processes: start them, forward signals, wait for them.

Each worker process runs this module (``python -m aana.tasks.supervisor``): it loads
the application with ``AanaSDK.from_path`` and imports nothing of the command line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from aana.log_config import configure_logging
from aana.tasks.errors import QueueUnavailableError
from aana.tasks.worker import Worker, WorkerOptions

logger = logging.getLogger(__name__)


def run_worker(app_path: str, options: WorkerOptions) -> int:
    """Load the application at ``app_path`` and run one worker in this process.

    Returns:
        0 once the worker stopped; 1 if a burst worker could not reach its queue (the
        reason is logged on one line).

    """
    from aana.sdk import AanaSDK

    return _run(Worker(AanaSDK.from_path(app_path), options))


def _run(worker: Worker) -> int:
    """Run ``worker`` until it stops: 0, or 1 if it could not reach its queue."""
    try:
        worker.run()
    except QueueUnavailableError as error:
        logger.error("worker stopped: %s", error)
        return 1
    return 0


def _child(name: str, app_path: str, options: WorkerOptions) -> int:
    from aana.sdk import AanaSDK

    # Ctrl-C reaches the whole process group; the parent forwards it once, as SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(process_name=name)  # as the command line: AANA_LOG_LEVEL/FORMAT
    worker = Worker(AanaSDK.from_path(app_path), options)
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


def run_workers(app_path: str, processes: int, options: WorkerOptions) -> int:
    """Run ``processes`` workers (this process itself when there is one).

    With a metrics port, worker ``n`` serves its metrics on that port plus ``n``.

    SIGTERM or SIGINT is passed on to every worker as SIGTERM: they stop claiming and
    finish their running tasks; a second signal makes them hand those back at once.

    Returns:
        0 if every worker exited cleanly, else 1.

    """
    if processes <= 1:
        return run_worker(app_path, options)
    names = [f"aana-worker-{n}" for n in range(processes)]
    # ``python -m`` makes the current directory importable, as for the command line.
    children = [
        subprocess.Popen([sys.executable, "-m", __name__, name, app_path, _encoded(options, n)])
        for n, name in enumerate(names)
    ]

    def forward(signum: int, _frame: FrameType | None) -> None:
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
    for name, code in zip(names, codes, strict=True):
        if code != 0:
            logger.error("%s exited with code %s", name, code)
    return 1 if any(codes) else 0


def _encoded(options: WorkerOptions, n: int) -> str:
    """The options of worker process ``n``: its metrics, if any, on the ``n``-th next port."""
    if options.metrics_port is not None:
        options = dataclasses.replace(options, metrics_port=options.metrics_port + n)
    return json.dumps(dataclasses.asdict(options))


def main(argv: list[str]) -> int:
    """A worker process started by ``run_workers``: ``NAME APP_PATH OPTIONS_JSON``."""
    name, app_path, encoded = argv
    return _child(name, app_path, WorkerOptions(**json.loads(encoded)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
