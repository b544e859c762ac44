"""The root of aana's exception hierarchy."""

from __future__ import annotations

import builtins
from typing import Any


def _rebuild(
    cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]
) -> BaseException:
    exception = cls.__new__(cls)
    builtins.Exception.__init__(exception, *args)
    exception.__dict__.update(state)
    return exception


class BaseException(builtins.Exception):
    """Base class of aana's exceptions.

    Keyword arguments are kept in ``extra`` and returned by ``get_data()``, so an
    exception can be turned into an API error payload. Every subclass pickles with its
    fields, whatever its constructor's signature.
    """

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message or self.__class__.__name__)
        self.extra = extra

    def get_data(self) -> dict[str, Any]:
        """The exception's name, message and keyword data, for an error response."""
        return {"error": self.__class__.__name__, "message": str(self), **self.extra}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.__class__, self.args, self.__dict__))
