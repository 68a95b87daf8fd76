"""ORM models of the registry: fine-tuned models (and checkpoints), aliases with versions, and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base, TimestampMixin
from app.kit.time import utcnow


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


class ModelAlias(TimestampMixin, Base):
    """A stable name (``support-bot``) callers use; its active version says which models answer."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(String(1024))
    active_version: Mapped[int | None] = mapped_column(Integer)
    # Versions made active, oldest first: rollback steps back through it.
    activations: Mapped[list[int]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AliasVersion(TimestampMixin, Base):
    """One numbered, immutable routing rule of an alias: weighted targets, fallbacks, an optional guard, and the
    optional release gate its activation must pass."""

    __tablename__ = "alias_versions"
    __table_args__ = (UniqueConstraint("alias_id", "version"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alias_id: Mapped[str] = mapped_column(ForeignKey("model_aliases.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    targets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, doc="[{model, weight}]")
    fallbacks: Mapped[list[str]] = mapped_column(JSON, default=list)
    guard: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="The release gate activating it must pass.")
    note: Mapped[str | None] = mapped_column(String(1024))
    created_by: Mapped[str | None] = mapped_column(String(64), doc="The API key that made it.")


class RegistryChange(TimestampMixin, Base):
    """The audit log: who changed which alias, when, and how."""

    __tablename__ = "registry_changes"
    __table_args__ = (Index(None, "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(64), doc="The API key id that made the change.")
    action: Mapped[str] = mapped_column(String(32))
    alias: Mapped[str] = mapped_column(String(128))
    version: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
