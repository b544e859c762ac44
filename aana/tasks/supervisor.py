"""Running several worker processes: spawn them, forward signals, wait for them."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from types import FrameType

from aana.tasks.worker import Worker, WorkerOptions

logger = logging.getLogger(__name__)


def run_worker(app_path: str, options: WorkerOptions) -> None:
    """Load the application at ``app_path`` and run one worker in this process."""
    from aana.cli import load_app

    Worker(load_app(app_path), options).run()


def _child(app_path: str, options: WorkerOptions) -> None:
    from aana.cli import load_app

    # Ctrl-C reaches the whole process group; the parent forwards it once, as SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")
    worker = Worker(load_app(app_path), options)
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
    worker.run()


def run_workers(app_path: str, processes: int, options: WorkerOptions) -> int:
    """Run ``processes`` workers (this process itself when there is one).

    SIGTERM or SIGINT is passed on to every worker as SIGTERM: they stop claiming and
    finish their running tasks; a second signal makes them hand those back at once.

    Returns:
        0 if every worker exited cleanly, else 1.

    """
    if processes <= 1:
        run_worker(app_path, options)
        return 0
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_child, args=(app_path, options), name=f"aana-worker-{n}")
        for n in range(processes)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping %d worker process(es)", signum, len(children))
        for child in children:
            if child.is_alive() and child.pid is not None:
                child.terminate()

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [child for child in children if child.exitcode != 0]
    for child in failed:
        logger.error("%s exited with code %s", child.name, child.exitcode)
    return 1 if failed else 0
