"""The application the browser tests serve with ``aana dashboard``."""

from aana.sdk import AanaSDK

app = AanaSDK(name="browser-test", migrations_path=None)
