"""Defers the same keys as its rivals, once a start file appears; prints the ids it got."""

import json
import sys
import time
from pathlib import Path

from aana.sdk import AanaSDK

app = AanaSDK(name="dedupe-racer")
start = Path(sys.argv[1])
app.task_queue()  # connect before the start
Path(f"{start}.{sys.argv[2]}.ready").touch()
while not start.exists():
    time.sleep(0.001)
ids = {f"key-{n}": app.defer("ep", {"n": n}, dedupe_key=f"key-{n}") for n in range(30)}
print(json.dumps(ids))
