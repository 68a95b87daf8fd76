"""ORM models of fine-tuning jobs, their events and their checkpoints."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base, PublicIdMixin, TimestampMixin


class JobStatus(StrEnum):
    validating_files = "validating_files"
    queued = "queued"
    running = "running"
    paused = "paused"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})
# A job in one of these may still move; one that reached TERMINAL never does.
ACTIVE = frozenset(JobStatus) - TERMINAL


class JobAction(StrEnum):
    """What the API asked of the worker running a job; the worker acts on it at its next heartbeat."""

    cancel = "cancel"
    pause = "pause"


def _enum(enum: type[StrEnum], length: int) -> Enum:
    return Enum(enum, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class FineTuningJob(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (
        Index(None, "project_id", "created_at"),
        Index(None, "status", "lease_expires_at"),
    )

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(256), doc="The model as the caller named it (base or ft:…).")
    base_model: Mapped[str] = mapped_column(String(256), doc="The base model the adapters are trained on.")
    parent_model: Mapped[str | None] = mapped_column(String(256), doc="The ft: model training continues from.")
    provider: Mapped[str] = mapped_column(String(64))
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[dict[str, Any]] = mapped_column(JSON)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON, doc="As requested; 'auto' resolved on start.")
    classification: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="The seed's legacy metric options.")
    seed: Mapped[int] = mapped_column(BigInteger)
    suffix: Mapped[str | None] = mapped_column(String(64))
    job_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, 24))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(512))
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    result_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    estimated_finish: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Worker coordination: who holds the job and until when; what the API asked of it.
    requested_action: Mapped[JobAction | None] = mapped_column(_enum(JobAction, 16), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0, doc="Sequence of the job's latest event.")


class EventLevel(StrEnum):
    info = "info"
    warn = "warn"
    error = "error"


class EventType(StrEnum):
    message = "message"
    metrics = "metrics"


class JobEvent(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "fine_tuning_job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    # Per-job, gap-free, committed in order (allocated under the job row's lock): the resumable stream's cursor.
    seq: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[EventLevel] = mapped_column(_enum(EventLevel, 8))
    type: Mapped[EventType] = mapped_column(_enum(EventType, 8))
    message: Mapped[str] = mapped_column(String(4096))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class JobCheckpoint(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "fine_tuning_job_checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step_number"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    step_number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(512))
