"""ORM model of usage: one row per project, key, model and minute, summed as requests are answered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base


class UsageBucket(Base):
    __tablename__ = "usage_buckets"
    __table_args__ = (Index(None, "project_id", "start_time"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(512), primary_key=True, doc="The model that answered.")
    start_time: Mapped[datetime] = mapped_column(primary_key=True, doc="The minute the requests fell in.")
    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
