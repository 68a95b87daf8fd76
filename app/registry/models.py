"""ORM model of fine-tuned models (and their checkpoints): what inference can route to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base, TimestampMixin


class FineTunedModel(TimestampMixin, Base):
    __tablename__ = "fine_tuned_models"
    __table_args__ = (Index(None, "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(
        String(512), primary_key=True, doc="ft:<base>:<project>:<suffix>:<job>[:ckpt-step-N]"
    )
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="SET NULL"))
    base_model: Mapped[str] = mapped_column(String(256))
    parent_model: Mapped[str | None] = mapped_column(String(512))
    provider: Mapped[str] = mapped_column(String(64))
    checkpoint_step: Mapped[int | None] = mapped_column(Integer, doc="Set for an intermediate checkpoint.")
    # Local: the adapter folder relative to the data dir. Upstream: the provider's own model id.
    artifact: Mapped[str] = mapped_column(String(1024))
    prompt_format: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="Separator/stop the data was trained with.")
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
