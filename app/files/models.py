"""ORM model for uploaded files."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base, PublicIdMixin, TimestampMixin


class FilePurpose(StrEnum):
    assistants = "assistants"
    assistants_output = "assistants_output"
    batch = "batch"
    batch_output = "batch_output"
    fine_tune = "fine-tune"
    fine_tune_results = "fine-tune-results"
    vision = "vision"
    user_data = "user_data"
    evals = "evals"


# What a caller may upload; the *_output and results purposes are written by ftgw itself.
UPLOADABLE_PURPOSES = (
    FilePurpose.assistants,
    FilePurpose.batch,
    FilePurpose.fine_tune,
    FilePurpose.vision,
    FilePurpose.user_data,
    FilePurpose.evals,
)


class FileStatus(StrEnum):
    uploaded = "uploaded"
    processed = "processed"
    error = "error"


class StoredFile(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "files"
    __table_args__ = (
        Index(None, "project_id", "created_at"),
        Index(None, "project_id", "purpose", "created_at"),
    )

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[FilePurpose] = mapped_column(
        Enum(FilePurpose, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])
    )
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[FileStatus] = mapped_column(Enum(FileStatus, native_enum=False, length=16))
    status_details: Mapped[str | None] = mapped_column(Text, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    storage_key: Mapped[str] = mapped_column(String(256))
    # The file this one was prepared from (``POST /v1/datasets/{id}/prepare``); the source is never modified.
    source_file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"), default=None)
    # The upload validation's summary (format, example count, first errors) for fine-tune files.
    validation: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
