"""migrations from upstream providers

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 21:56:34.203293
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.orm


revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("target_provider", sa.String(length=64), nullable=False),
        sa.Column("base_model", sa.String(length=256), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "planned",
                "queued",
                "running",
                "completed",
                "failed",
                "cancelled",
                name="migrationstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("updated_at", app.kit.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("switched_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", app.kit.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.kit.orm.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_migrations_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migrations")),
    )
    with op.batch_alter_table("migrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_migrations_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_migrations_project_id_created_at"), ["project_id", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_migrations_status_lease_expires_at"), ["status", "lease_expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("migrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_migrations_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_migrations_project_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_migrations_created_at"))

    op.drop_table("migrations")
