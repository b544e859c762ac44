"""Captions produced by captioning models."""

from typing import Annotated

from pydantic import Field

Caption = Annotated[str, Field(description="A caption of one frame.")]
CaptionsList = Annotated[list[Caption], Field(description="Captions of several frames.")]
