"""aana: the storage layer of the Aana SDK."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aana.sdk import AanaSDK

__all__ = ["AanaSDK"]


def __getattr__(name: str) -> Any:
    # Importing aana stays cheap: the SDK (and SQLAlchemy) load on first use.
    if name == "AanaSDK":
        from aana.sdk import AanaSDK

        return AanaSDK
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
