"""ORM model of a migration: what was asked, the plan shown, and each item's progress (the report is read off it)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base, PublicIdMixin, TimestampMixin
from app.kit.time import utcnow


class MigrationStatus(StrEnum):
    planned = "planned"  # shown, not started
    queued = "queued"  # started (or resumed): a worker takes it
    running = "running"
    completed = "completed"  # every item ended (some may have failed: see the report)
    failed = "failed"  # stopped on an error; POST …/resume carries on from the last saved step
    cancelled = "cancelled"


ACTIVE = frozenset({MigrationStatus.queued, MigrationStatus.running})


class Migration(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "migrations"
    __table_args__ = (Index(None, "project_id", "created_at"), Index(None, "status", "lease_expires_at"))

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64), doc="The upstream provider moved from.")
    target_provider: Mapped[str] = mapped_column(String(64), doc="Where the jobs are retrained.")
    base_model: Mapped[str] = mapped_column(String(256), doc="The base model they are retrained on.")
    status: Mapped[MigrationStatus] = mapped_column(Enum(MigrationStatus, native_enum=False, length=16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, doc="The create request, as given.")
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, doc="What will be copied, trained, aliased; estimates.")
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, doc="One per upstream job: its steps' state.")
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    switched_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
