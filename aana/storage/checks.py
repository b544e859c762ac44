r"""Checks of values before they reach a database, the same on every backend.

PostgreSQL and SQLite disagree on what they accept: PostgreSQL refuses NUL characters and
NaN in JSON, SQLite stores them; SQLite refuses integers beyond 64 bits and PostgreSQL
those beyond its column's width; the drivers fail to encode lone surrogates each in their
own way. These checks refuse the same values on both, with the same typed exception (see
``aana.exceptions.db.InvalidInputException``), before any SQL runs. The column types of
``aana.storage.types`` apply them to every statement: ORM flushes, Core and bulk inserts,
the task queue's statements.

What is refused, and why:

- text: lone surrogates (not Unicode; no encoding can write them) and NUL (``\\x00``),
  which PostgreSQL cannot store in text or JSON;
- floats: NaN and ±infinity (PostgreSQL and SQLite disagree on them, JSON has no such
  numbers), and values that are not real numbers, booleans included;
- integers: values outside the column's width (16, 32 or 64 bits), booleans, and numbers
  that are not whole (``2.5``, ``inf``); whole floats such as ``3.0`` are stored as ``3``;
- JSON: any of the above inside, values JSON cannot hold (objects, bytes, sets), and
  nesting deeper than ``MAX_JSON_DEPTH`` levels (which also stops a value that contains
  itself).
"""

from __future__ import annotations

import json
import math
import numbers
import operator
import re
from collections.abc import Iterable
from typing import Any

from aana.exceptions.db import InvalidJsonException, InvalidTypeException, InvalidValueException

MAX_JSON_DEPTH = 500
"""Deepest nesting of lists and dicts a JSON value may have. Python's JSON encoder and
decoder recurse once per level and stop at the recursion limit (1,000 frames by default,
some already used by the caller): a value stored must also be readable."""

_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _text_problem(text: str) -> str | None:
    """What makes ``text`` unstorable, or None."""
    if text.isascii() and "\x00" not in text:  # the common case, without a regex
        return None
    found = _UNSTORABLE_CHARACTER.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return (
            f"has a NUL character ('\\x00') at index {found.start()}, which PostgreSQL cannot "
            "store (so no backend accepts it); remove it, e.g. text.replace('\\x00', '')"
        )
    return (
        f"has a lone surrogate ({found.group()!r}) at index {found.start()}, which is not "
        "valid Unicode and cannot be stored; decode the bytes it came from with "
        "errors='replace', or fix its encoding"
    )


def all_text_storable(texts: Iterable[str]) -> bool:
    """Whether every one of these strings can be stored (one pass over all of them)."""
    joined = "".join(texts)
    return _text_problem(joined) is None


def check_text(value: Any, where: str) -> str:
    """``value`` if it is a string that can be stored.

    Args:
        value: The value bound to a text column.
        where: The column, for the message (``"video.title"``).

    Raises:
        InvalidTypeException: ``value`` is not a string.
        InvalidValueException: It has a lone surrogate or a NUL character.

    """
    if not isinstance(value, str):
        raise InvalidTypeException(
            f"{where} takes text, got {type(value).__name__} {_shown(value)}; "
            "convert it, e.g. str(value)",
            where,
        )
    problem = _text_problem(value)
    if problem is not None:
        raise InvalidValueException(f"{where}: the text {problem}.", where)
    return value


def _not_finite(value: Any, where: str) -> InvalidValueException:
    return InvalidValueException(
        f"{where} takes finite numbers, got {value!r}: NaN and infinity cannot be stored; "
        "leave the value out (None) where it is unknown",
        where,
    )


def check_float(value: Any, where: str) -> float:
    """``value`` as a finite float.

    Raises:
        InvalidTypeException: ``value`` is not a real number (or is a bool).
        InvalidValueException: It is NaN, infinite, or too large for a float.

    """
    if isinstance(value, float):  # the common case first
        if math.isfinite(value):
            return value
        raise _not_finite(value, where)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeException(
            f"{where} takes a number, got {type(value).__name__} {_shown(value)}", where
        )
    try:
        number = float(value)
    except OverflowError:
        raise InvalidValueException(
            f"{where} takes numbers up to about 1.8e308, got {_shown(value)}", where
        ) from None
    if not math.isfinite(number):
        raise _not_finite(value, where)
    return number


def check_integer(value: Any, where: str, bits: int) -> int:
    """``value`` as an int that fits a signed integer column of ``bits`` bits.

    Raises:
        InvalidTypeException: ``value`` is not a number, or is a bool.
        InvalidValueException: It is not a whole number, or is out of the column's range.

    """
    limit = 1 << (bits - 1)
    if type(value) is int and -limit <= value < limit:  # the common case first
        return value
    if isinstance(value, bool):
        raise InvalidTypeException(
            f"{where} takes an integer, got the bool {value!r}; pass int({value!r}) if you "
            "mean the number",
            where,
        )
    if isinstance(value, numbers.Integral):
        number = operator.index(value)
    elif isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise InvalidValueException(
                f"{where} takes whole numbers, got {value!r}; NaN and infinity are not "
                "integers (for 'highest', use the column's largest value)",
                where,
            )
        if value != math.floor(value):
            raise InvalidValueException(
                f"{where} takes whole numbers, got {value!r}; round it first, e.g. "
                f"round({value!r})",
                where,
            )
        number = operator.index(math.floor(value))
    else:
        raise InvalidTypeException(
            f"{where} takes an integer, got {type(value).__name__} {_shown(value)}", where
        )
    if not -limit <= number < limit:
        raise InvalidValueException(
            f"{where} is a {bits}-bit integer column: it holds {-limit} to {limit - 1}, "
            f"got {_shown(number)}",
            where,
        )
    return number


def _json_problem(value: Any) -> tuple[str, str] | None:
    """Where (a path such as ``[2]["end"]``) and what makes ``value`` unstorable as JSON.

    Walks the value without recursion, so a deep value cannot exhaust the stack.
    """
    # Each entry: a value, its depth, and its path as (key, parent path) pairs, built
    # into text only when a problem is found.
    pending: list[tuple[Any, int, Any]] = [(value, 0, None)]
    while pending:
        item, depth, path = pending.pop()
        problem = None
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, str):
            problem = _text_problem(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                problem = f"is {item!r}: JSON has no NaN or infinity; store None instead"
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_JSON_DEPTH:
                return _json_path(path), (
                    f"is nested more than {MAX_JSON_DEPTH} levels deep (or contains "
                    "itself); flatten it"
                )
            if isinstance(item, dict):
                for key, member in item.items():
                    if isinstance(key, str):
                        key_problem = _text_problem(key)
                        if key_problem is not None:
                            return _json_path(path), f"has a key that {key_problem}"
                    elif key is not None and not isinstance(key, int | float):
                        return _json_path(path), (
                            f"has a key of type {type(key).__name__} ({_shown(key)}); JSON "
                            "keys are strings"
                        )
                    elif isinstance(key, float) and not math.isfinite(key):
                        return _json_path(path), f"has the key {key!r}; JSON has no NaN"
                    pending.append((member, depth + 1, (key, path)))
            else:
                for index, member in enumerate(item):
                    pending.append((member, depth + 1, (index, path)))
        else:
            problem = (
                f"is of type {type(item).__name__} ({_shown(item)}), which JSON cannot hold; "
                "convert it to dicts, lists, strings, numbers, booleans or None "
                "(e.g. str(path), moment.isoformat(), model.model_dump(mode='json'))"
            )
        if problem is not None:
            return _json_path(path), problem
    return None


def _json_path(path: Any) -> str:
    keys = []
    while path is not None:
        key, path = path
        keys.append(f"[{key!r}]")
    keys.reverse()
    if len(keys) > 8:  # a path through a deep value: its ends say enough
        keys[4:-4] = [f"...{len(keys) - 8} levels..."]
    return "".join(keys)


def check_json(value: Any, where: str) -> Any:
    """``value`` if it can be stored as JSON on every backend.

    Raises:
        InvalidJsonException: ``value`` (or something inside it) is not JSON, is NaN or
            infinite, has a lone surrogate or NUL, or is nested too deep. It is both a
            ``TypeError`` and a ``ValueError``.

    """
    found = _json_problem(value)
    if found is not None:
        path, problem = found
        raise InvalidJsonException(
            f"{where} must be JSON-serialisable and storable: {where}{path} {problem}.", where
        )
    return value


_JSON = json.JSONEncoder(allow_nan=False)  # one encoder: json.dumps(...) builds one per call
_SHALLOW_TEXT = 2 * MAX_JSON_DEPTH
"""JSON text this short cannot nest deeper than ``MAX_JSON_DEPTH``."""


def json_text(value: Any, what: str) -> str:
    """``value`` as JSON text, or a ``TypeError`` if it cannot be stored as JSON.

    Raises:
        InvalidJsonException: ``value`` holds something JSON cannot (an object, NaN,
            infinity), text no backend can store (a lone surrogate, NUL), or is nested
            deeper than ``MAX_JSON_DEPTH``. A ``TypeError`` (and a
            ``ValueError``); never a ``RecursionError``.

    """
    # The C encoder first, then the walk of ``check_json`` (which names the
    # problem) only if the text leaves a doubt: an escaped NUL or surrogate (a pair is
    # a character beyond the BMP, alone it is unstorable), or enough characters for a
    # nesting deeper than allowed (each level takes two brackets). Most task data is
    # small and plain, and never walked.
    refused: Exception | None = None
    try:
        text = _JSON.encode(value)
    except (TypeError, ValueError, RecursionError) as error:
        text, refused = "", error
    if refused is not None or len(text) > _SHALLOW_TEXT or "\\u0000" in text or "\\ud" in text:
        check_json(value, what)  # walks without recursion: raises what is wrong
    if refused is not None:  # what the walk accepts but the encoder refused
        raise InvalidJsonException(
            f"{what} must be JSON-serialisable (dicts, lists, strings, numbers, "
            f"booleans, None; no NaN or infinity): {refused}. Convert other values, "
            "e.g. str(path).",
            what,
        )
    return text


_LARGEST_ROW_COUNT = (1 << 63) - 1


def _check_count(value: Any, name: str, allow_none: bool) -> None:
    allowed = "None (no limit) or an integer >= 0" if allow_none else "an integer >= 0"
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeException(
            f"{name} must be {allowed}, got {type(value).__name__} {_shown(value)}", name
        )
    if not 0 <= operator.index(value) <= _LARGEST_ROW_COUNT:
        raise InvalidValueException(f"{name} must be {allowed}, got {_shown(value)}", name)


def check_page(limit: Any, offset: Any = 0) -> None:
    """Refuse a page that no backend would read the same way, before any SQL runs.

    Args:
        limit: At most this many rows: an integer >= 0, or None for all.
        offset: Rows to skip: an integer >= 0.

    Raises:
        InvalidValueException: ``limit`` or ``offset`` is negative (or beyond 64 bits).
        InvalidTypeException: Either is not an integer.

    """
    _check_count(limit, "limit", allow_none=True)
    _check_count(offset, "offset", allow_none=False)
