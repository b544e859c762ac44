"""Time intervals within media."""

from pydantic import BaseModel, Field, model_validator


class TimeInterval(BaseModel):
    """An interval of a media's timeline, in seconds from its start."""

    start: float = Field(ge=0.0, description="Start, in seconds.")
    end: float = Field(ge=0.0, description="End, in seconds.")

    @model_validator(mode="after")
    def _end_not_before_start(self) -> "TimeInterval":
        if self.end < self.start:
            raise ValueError(f"the interval ends ({self.end}) before it starts ({self.start})")
        return self
