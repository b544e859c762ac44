"""The application the multi-host tests run: one handler that records each execution.

Each execution appends ``N HOST PID TIME`` to ``$AANA_TEST_RECORD/<pid>.txt``; ``HOST`` is
``$AANA_TEST_HOST`` (the network namespace the worker runs in). While the file
``$AANA_TEST_RECORD/slow-HOST`` exists, that host's handler sleeps ``SLOW`` seconds more:
a test makes sure the host holds started tasks when it cuts the host off.
"""

import os
import socket
import time
from pathlib import Path

from aana.sdk import AanaSDK

app = AanaSDK(name="fleet-test")
_HOST = os.environ.get("AANA_TEST_HOST") or socket.gethostname()
SLOW = 2.0


@app.task("record")
def record(data):
    folder = os.environ.get("AANA_TEST_RECORD")
    slow = folder is not None and (Path(folder) / f"slow-{_HOST}").exists()
    time.sleep(data.get("seconds", 0) + (SLOW if slow else 0))
    if folder:
        with (Path(folder) / f"{os.getpid()}.txt").open("a") as out:
            out.write(f"{data['n']} {_HOST} {os.getpid()} {time.time():.3f}\n")
    return data["n"]
