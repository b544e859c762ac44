"""Initial schema

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import aana.storage.dialects
import aana.storage.types

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("aana",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "caption",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(), nullable=False, comment="Name of the captioning model"),
        sa.Column(
            "frame_id", sa.Integer(), nullable=False, comment="Index of the frame in the video"
        ),
        sa.Column("caption", sa.String(), nullable=False, comment="The caption"),
        sa.Column(
            "timestamp", sa.Double(), nullable=False, comment="Time of the frame, in seconds"
        ),
        sa.Column(
            "caption_type", sa.String(), nullable=False, comment="Kind of caption: the identity"
        ),
        sa.Column(
            "created_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="When the row was created (UTC)",
        ),
        sa.Column(
            "updated_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="When the row last changed (UTC)",
        ),
        sa.CheckConstraint("frame_id >= 0", name=op.f("ck_caption_frame_id_non_negative")),
        sa.CheckConstraint("timestamp >= 0", name=op.f("ck_caption_timestamp_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caption")),
    )
    op.create_table(
        "media",
        sa.Column("id", sa.String(length=36), nullable=False, comment="Media id"),
        sa.Column(
            "media_type",
            sa.String(),
            nullable=False,
            comment="Which kind of media: the entity's identity",
        ),
        sa.Column(
            "created_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="When the row was created (UTC)",
        ),
        sa.Column(
            "updated_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="When the row last changed (UTC)",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media")),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "endpoint",
            sa.String(),
            nullable=False,
            comment="Name of the endpoint that runs the task",
        ),
        sa.Column(
            "data", aana.storage.types.JsonType, nullable=False, comment="The task's input (JSON)"
        ),
        sa.Column(
            "status",
            sa.Enum(
                "created",
                "assigned",
                "completed",
                "running",
                "failed",
                "not_finished",
                name="status",
                native_enum=False,
                length=64,
            ),
            nullable=False,
            comment="Life-cycle state",
        ),
        sa.Column("priority", sa.Integer(), nullable=False, comment="Higher runs first"),
        sa.Column(
            "assigned_at",
            aana.storage.types.UtcDateTime(),
            nullable=True,
            comment="When last claimed (UTC)",
        ),
        sa.Column(
            "completed_at",
            aana.storage.types.UtcDateTime(),
            nullable=True,
            comment="When it ended (UTC)",
        ),
        sa.Column("progress", sa.Double(), nullable=False, comment="Progress, 0 to 1"),
        sa.Column(
            "result",
            aana.storage.types.JsonType,
            nullable=True,
            comment="The output, or the error (JSON)",
        ),
        sa.Column(
            "num_retries", sa.Integer(), nullable=False, comment="Times the task was claimed"
        ),
        sa.Column("user_id", sa.String(), nullable=True, comment="Who deferred the task"),
        sa.Column(
            "created_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="When the row was created (UTC)",
        ),
        sa.Column(
            "updated_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="When the row last changed (UTC)",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_claimable",
            ["priority", "created_at"],
            unique=False,
            postgresql_where=sa.text("status IN ('created', 'not_finished')"),
            sqlite_where=sa.text("status IN ('created', 'not_finished')"),
        )
        batch_op.create_index("ix_tasks_status", ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_user_id"), ["user_id"], unique=False)

    op.create_table(
        "transcript",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(), nullable=False, comment="Name of the ASR model"),
        sa.Column("transcript", sa.String(), nullable=False, comment="Full text"),
        sa.Column(
            "segments", aana.storage.types.JsonType, nullable=False, comment="Timed segments (JSON)"
        ),
        sa.Column("language", sa.String(), nullable=False, comment="Detected language"),
        sa.Column(
            "language_confidence",
            sa.Double(),
            nullable=True,
            comment="Confidence in the detected language, 0 to 1",
        ),
        sa.Column(
            "transcript_type",
            sa.String(),
            nullable=False,
            comment="Kind of transcript: the identity",
        ),
        sa.Column(
            "created_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="When the row was created (UTC)",
        ),
        sa.Column(
            "updated_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="When the row last changed (UTC)",
        ),
        sa.CheckConstraint(
            "language_confidence >= 0 AND language_confidence <= 1",
            name=op.f("ck_transcript_language_confidence_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcript")),
    )
    op.create_table(
        "video",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(), nullable=True, comment="Local path of the video file"),
        sa.Column("url", sa.String(), nullable=True, comment="URL of the video"),
        sa.Column("title", sa.String(), nullable=True, comment="Title"),
        sa.Column("description", sa.String(), nullable=True, comment="Description"),
        sa.ForeignKeyConstraint(
            ["id"], ["media.id"], name=op.f("fk_video_id_media"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video")),
    )


def downgrade() -> None:
    op.drop_table("video")
    op.drop_table("transcript")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_user_id"))
        batch_op.drop_index("ix_tasks_status")
        batch_op.drop_index(
            "ix_tasks_claimable",
            postgresql_where=sa.text("status IN ('created', 'not_finished')"),
            sqlite_where=sa.text("status IN ('created', 'not_finished')"),
        )

    op.drop_table("tasks")
    op.drop_table("media")
    op.drop_table("caption")
