"""ORM models for projects and API keys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base, PublicIdMixin, TimestampMixin


class Role(StrEnum):
    admin = "admin"  # manages projects and keys, and uses the API in its own project
    member = "member"  # uses the API in its own project


class Project(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(128), unique=True)


class ApiKey(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "api_keys"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16))
    # sha256 of the secret: keys are 238-bit random strings, so a fast hash is as strong as a slow one here.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    redacted_value: Mapped[str] = mapped_column(String(32))
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # Per-key limits per minute; None is unlimited.
    max_requests_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    max_tokens_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)


class ConsoleSession(TimestampMixin, Base):
    """A signed-in web console: the cookie holds a random token, this row its hash (never the API key).

    ``project_id`` is the project the console acts in: the key's own, or any project an admin switched to.
    """

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # Sent back by the console's pages in X-CSRF-Token (or a form field) on every state-changing request.
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(index=True)
