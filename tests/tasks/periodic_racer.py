"""Runs the periodic scheduler of ``periodic_app`` over three given periods, racing rivals.

Arguments: the start file to wait for, this racer's number, and the first period's
start (ISO). The clock is injected: each racer defers the periods at exactly the same
three instants, so the test does not depend on when the processes get scheduled.
"""

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from aana.tasks.periodic import PeriodicScheduler
from tests.tasks.periodic_app import app

start, number, first = Path(sys.argv[1]), sys.argv[2], datetime.fromisoformat(sys.argv[3])
manager = app.task_queue()


def defer(task, period_start, key):
    return manager.defer_periodic(task.endpoint, task.data, task.priority, period_start, key)


scheduler = PeriodicScheduler(app.periodic_tasks, defer, clock=manager.database_now)
manager.database_now()  # connected before the start
Path(f"{start}.{number}.ready").touch()
while not start.exists():
    time.sleep(0.001)
stored = []
for second in range(3):
    # Twice within each period: a later look in the same period stores nothing more.
    for offset in (0.1, 0.6):
        stored += scheduler.run_once(first + timedelta(seconds=second + offset))
print(json.dumps(stored))
