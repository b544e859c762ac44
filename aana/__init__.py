"""aana: the storage layer of the Aana SDK."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aana.sdk import AanaSDK

__all__ = ["AanaSDK", "__version__"]


def __getattr__(name: str) -> Any:
    # Importing aana stays cheap: the SDK (and SQLAlchemy) load on first use.
    if name == "AanaSDK":
        from aana.sdk import AanaSDK

        return AanaSDK
    if name == "__version__":
        from importlib.metadata import version

        return version("aana-storage")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
