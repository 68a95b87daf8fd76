"""ORM model for cached dataset reports: one per file, model and issue cap (files never change once stored)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base, PublicIdMixin, TimestampMixin


class StoredReport(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "dataset_reports"
    __table_args__ = (UniqueConstraint("file_id", "model", "max_issues"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(256), doc="'' for the default tokenizer without a model limit")
    max_issues: Mapped[int] = mapped_column(Integer)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
