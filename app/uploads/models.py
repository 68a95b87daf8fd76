"""ORM models of uploads in progress and their parts (the parts' bytes live on disk, see parts.py)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.files.models import FilePurpose
from app.kit.orm import Base, PublicIdMixin, TimestampMixin
from app.kit.time import utcnow


class UploadStatus(StrEnum):
    pending = "pending"
    completed = "completed"
    cancelled = "cancelled"
    expired = "expired"


class Upload(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "uploads"
    # The upkeep looks for pending uploads past their expiry, across projects.
    __table_args__ = (Index(None, "status", "expires_at"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[FilePurpose] = mapped_column(
        Enum(FilePurpose, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])
    )
    bytes: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str] = mapped_column(String(255))
    status: Mapped[UploadStatus] = mapped_column(Enum(UploadStatus, native_enum=False, length=16))
    expires_at: Mapped[datetime]
    # What the parts added so far hold together: raised atomically with each part, never past ``bytes``.
    received_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # ``expires_after.seconds`` of the create request, for the File that completing makes.
    file_expires_in: Mapped[int | None] = mapped_column(Integer, default=None)
    file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"), default=None)


class UploadPart(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "upload_parts"

    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)


def current_status(upload: Upload) -> UploadStatus:
    """The status a caller sees: a pending upload past its expiry is expired, whether or not the upkeep has
    recorded it yet."""
    if upload.status is UploadStatus.pending and upload.expires_at <= utcnow():
        return UploadStatus.expired
    return upload.status
