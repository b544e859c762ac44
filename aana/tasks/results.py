"""What a worker stores as a task's result: checked JSON, and failures made storable.

A result is checked before it is written, against what every supported database can
store, so that one poison result ends its own task as FAILED instead of failing the
statement that stores the results of many.
"""

from __future__ import annotations

import json
import re
import traceback
from typing import Any

from aana.tasks.errors import ResultNotSerializableError, ResultNotStorableError

MAX_RESULT_BYTES = 16 * 1024 * 1024
"""Default cap on a result's JSON text (UTF-8 bytes): larger results end FAILED."""

MAX_MESSAGE_CHARS = 20_000
"""A failed task keeps the first this many characters of its exception's message ..."""

MAX_TRACEBACK_CHARS = 20_000
"""... and the last this many characters of its formatted traceback."""

_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)
# NUL is the one character JSON escapes that PostgreSQL's jsonb refuses; an escaped
# backslash followed by "u0000" (an even run of backslashes) is harmless text.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


class NestedTooDeeplyError(TypeError):
    """A value nests lists and dicts deeper than the JSON encoder can follow."""


def encode_json(value: Any, what: str) -> str:
    """``value`` as JSON text; never ``RecursionError``, whatever its depth.

    Raises:
        NestedTooDeeplyError: ``value`` nests too deeply (a ``TypeError``).
        TypeError: ``value`` is not JSON (objects, NaN, infinity, ...).

    """
    try:
        return _ENCODER.encode(value)
    except RecursionError:
        raise NestedTooDeeplyError(
            f"{what} nests lists or dicts too deeply to be stored as JSON"
        ) from None
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{what} must be JSON-serialisable (dicts, lists, strings, numbers, booleans, "
            f"None; no NaN or infinity): {error}. Convert other values, e.g. str(path)."
        ) from None


def check_result(value: Any, what: str, max_bytes: int = MAX_RESULT_BYTES) -> None:
    """Check that ``value`` can be stored as a task's result on every backend.

    Raises:
        ResultNotSerializableError: ``value`` is not JSON.
        ResultNotStorableError: ``value`` is JSON the database cannot store: nested too
            deeply, a NUL character or a lone surrogate in a string, or more than
            ``max_bytes`` bytes of JSON text.

    """
    try:
        text = encode_json(value, what)
    except NestedTooDeeplyError as error:
        raise ResultNotStorableError(str(error)) from None
    except TypeError as error:
        raise ResultNotSerializableError(str(error)) from None
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise ResultNotStorableError(
            f"{what} contains a NUL character (\\u0000), which PostgreSQL cannot store in "
            "JSON; drop it, or encode binary data (e.g. base64)"
        )
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ResultNotStorableError(
                f"{what} contains a lone surrogate (U+D800 to U+DFFF), which is not valid "
                "Unicode text; decode bytes with errors='replace' first"
            ) from None
    if size > max_bytes:
        raise ResultNotStorableError(
            f"{what} is {size:,} bytes of JSON, more than the {max_bytes:,} a result may "
            "have; store large outputs elsewhere and return a reference to them"
        )


def storable_text(text: str) -> str:
    """``text`` with NUL characters and lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE_CHARACTERS.sub("\ufffd", text)


def failure(error: BaseException) -> dict[str, Any]:
    """The stored result of a failed task, storable whatever ``error`` holds.

    ``{"error": class name, "message": str(error)}``, plus ``"traceback"`` (its last
    ``MAX_TRACEBACK_CHARS`` characters) for an exception that was raised. Never raises.
    """
    try:
        message = str(error)
    except Exception:  # a broken __str__ must not break the worker
        message = f"<{type(error).__name__} object: str() failed>"
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + " [truncated]"
    stored = {"error": storable_text(type(error).__name__), "message": storable_text(message)}
    if error.__traceback__ is not None:
        try:
            formatted = "".join(traceback.format_exception(error))
        except Exception:
            formatted = "<the traceback could not be formatted>"
        if len(formatted) > MAX_TRACEBACK_CHARS:
            formatted = "[truncated] ..." + formatted[-MAX_TRACEBACK_CHARS:]
        stored["traceback"] = storable_text(formatted)
    return stored
