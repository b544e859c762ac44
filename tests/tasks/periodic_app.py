"""An application with a periodic task every second, for the multi-process tests."""

from aana.sdk import AanaSDK

app = AanaSDK(name="periodic-test")


@app.periodic(cron="* * * * * *", endpoint="tick")
def tick(data):
    return "tock"
