"""Logging for the ``aana`` command and its worker processes (*ours*).

Library code only logs, through ``logging.getLogger(__name__)``; it never configures
logging. The command line does, once, with ``configure_logging``: a level and a format
(``text`` for people, ``json`` for log collectors), also read from ``AANA_LOG_LEVEL``
and ``AANA_LOG_FORMAT``, which worker processes inherit.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from datetime import UTC, datetime
from typing import Literal

LEVEL_VARIABLE = "AANA_LOG_LEVEL"
FORMAT_VARIABLE = "AANA_LOG_FORMAT"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(processName)s %(process)d] %(message)s"

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, process, message."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "process_name": record.processName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    level: str | None = None, log_format: str | None = None, process_name: str | None = None
) -> None:
    """Send log records to standard error with ``level`` and ``log_format``.

    Args:
        level: A level name; by default ``AANA_LOG_LEVEL``, else ``INFO``.
        log_format: ``text`` or ``json``; by default ``AANA_LOG_FORMAT``, else ``text``.
        process_name: The name this process has in log lines (worker processes).

    Raises:
        ValueError: An unknown level or format; the message lists the valid ones.

    """
    level = (level or os.environ.get(LEVEL_VARIABLE) or "INFO").upper()
    log_format = (log_format or os.environ.get(FORMAT_VARIABLE) or "text").lower()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(FORMATS)}")
    if process_name:
        multiprocessing.current_process().name = process_name
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Alembic reports every step at INFO ("Context impl SQLiteImpl."): the commands say
    # what they did themselves, so its chatter shows only when debugging.
    logging.getLogger("alembic").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    # Worker processes started from here log the same way.
    os.environ[LEVEL_VARIABLE] = level
    os.environ[FORMAT_VARIABLE] = log_format
