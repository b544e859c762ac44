"""The application the benchmark's workers run."""

import time

from aana.sdk import AanaSDK

app = AanaSDK(name="bench")


@app.task("noop")
def noop(data):
    return None


@app.task("stamp")
def stamp(data):
    return time.time()
