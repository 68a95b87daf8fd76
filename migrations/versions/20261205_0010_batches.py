"""batches

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 22:54:17.960919
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.orm


revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("input_file_id", sa.String(length=64), nullable=False),
        sa.Column("completion_window", sa.String(length=16), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "validating",
                "failed",
                "in_progress",
                "finalizing",
                "completed",
                "expired",
                "cancelling",
                "cancelled",
                name="batchstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("output_file_id", sa.String(length=64), nullable=True),
        sa.Column("error_file_id", sa.String(length=64), nullable=True),
        sa.Column("request_total", sa.Integer(), nullable=False),
        sa.Column("request_completed", sa.Integer(), nullable=False),
        sa.Column("request_failed", sa.Integer(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("expires_at", app.kit.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column("in_progress_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finalizing_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelling_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.kit.orm.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_batches_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batches_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_batches_project_id_created_at"), ["project_id", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_batches_status_lease_expires_at"), ["status", "lease_expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batches_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_batches_project_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_batches_created_at"))

    op.drop_table("batches")
