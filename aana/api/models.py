"""The request and response bodies of the task API (its OpenAPI schema)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from aana.storage.models.task import DEDUPE_KEY_LENGTH, Status

INT32 = 2**31 - 1


class DeferRequest(BaseModel):
    """A task to defer: the options of ``AanaSDK.defer``."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=255, description="Endpoint that runs it")
    data: Any = Field(default=None, description="The task's input (JSON)")
    priority: int = Field(default=0, ge=-INT32 - 1, le=INT32, description="Higher runs first")
    user_id: str | None = Field(default=None, max_length=255, description="Who deferred it")
    schedule_at: AwareDatetime | None = Field(
        default=None, description="Due from then on (with a time zone)"
    )
    schedule_in: float | None = Field(
        default=None, ge=0, description="Due this many seconds from now"
    )
    dedupe_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=DEDUPE_KEY_LENGTH,
        description="While an unfinished task has this key, its id is returned instead",
    )


class Deferred(BaseModel):
    """The id of the task deferred."""

    id: uuid.UUID


class Task(BaseModel):
    """A task with its status, progress, result and timestamps (UTC)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    endpoint: str
    status: Status
    priority: int
    progress: float
    data: Any = None
    result: Any = None
    num_retries: int
    user_id: str | None
    created_at: datetime
    updated_at: datetime
    assigned_at: datetime | None
    completed_at: datetime | None
    scheduled_at: datetime
    cancel_requested: bool


class TaskPage(BaseModel):
    """A page of tasks, newest first, and how many match the filters in all."""

    items: list[Task]
    total: int
    limit: int
    offset: int


class TaskCounts(BaseModel):
    """Tasks per status, in all and per endpoint."""

    by_status: dict[Status, int]
    by_endpoint: dict[str, dict[Status, int]]
    total: int
