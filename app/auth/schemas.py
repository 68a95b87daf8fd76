"""Wire schemas for projects and API keys (shaped like OpenAI's admin API objects)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from app.auth.models import Role
from app.kit.numbers import INT32_MAX
from app.kit.schemas import RequestSchema, Schema, UnixTime

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class ProjectCreate(RequestSchema):
    name: Name


class ProjectOut(Schema):
    id: str
    object: Literal["organization.project"] = "organization.project"
    name: str
    created_at: UnixTime


PerMinute = Annotated[int, Field(ge=1, le=INT32_MAX)] | None


class RateLimits(RequestSchema):
    """Per-key limits per minute; null is unlimited. Over a limit, requests get 429 with ``Retry-After``."""

    max_requests_per_minute: PerMinute = None
    max_tokens_per_minute: PerMinute = None


class ApiKeyCreate(RateLimits):
    name: Name = "default"
    role: Role = Role.member


class ApiKeyUpdate(RateLimits):
    pass


class ApiKeyOut(Schema):
    id: str
    object: Literal["organization.project.api_key"] = "organization.project.api_key"
    project_id: str
    name: str
    role: Role
    redacted_value: str
    created_at: UnixTime
    revoked_at: UnixTime | None = None
    max_requests_per_minute: int | None = None
    max_tokens_per_minute: int | None = None


class ApiKeyCreated(ApiKeyOut):
    value: str = Field(description="The secret. Shown once, here; ftgw keeps only its hash.")


class ApiKeyDeleted(Schema):
    id: str
    object: Literal["organization.project.api_key.deleted"] = "organization.project.api_key.deleted"
    deleted: bool = True
