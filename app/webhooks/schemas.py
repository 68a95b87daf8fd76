"""Wire schemas of /v1/webhooks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, field_validator

from app.kit.schemas import RequestSchema, Schema, UnixTime
from app.webhooks.models import JOB_EVENTS, DeliveryStatus

# OpenAI's eval run webhook events (its spelling: canceled), each with ``data: {"id": <run id>}``.
EVAL_RUN_EVENTS = ("eval.run.succeeded", "eval.run.failed", "eval.run.canceled")
EVENTS = (*JOB_EVENTS, *EVAL_RUN_EVENTS)


class WebhookCreate(RequestSchema):
    url: AnyHttpUrl
    events: list[str] = Field(
        default_factory=lambda: sorted(JOB_EVENTS),
        min_length=1,
        description=f"What to receive, among {', '.join(EVENTS)}; the fine-tuning job events unless given.",
    )

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str]) -> list[str]:
        unknown = sorted(set(events) - set(EVENTS))
        if unknown:
            raise ValueError(f"unknown event(s) {unknown}; known: {list(EVENTS)}")
        return sorted(set(events))


class WebhookOut(Schema):
    id: str
    object: Literal["webhook"] = "webhook"
    url: str
    events: list[str]
    created_at: UnixTime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Signs every delivery (HMAC-SHA256). Shown once, here.")


class WebhookDeleted(Schema):
    id: str
    object: Literal["webhook.deleted"] = "webhook.deleted"
    deleted: bool = True


class DeliveryOut(Schema):
    id: str
    object: Literal["webhook.delivery"] = "webhook.delivery"
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    created_at: UnixTime
    delivered_at: UnixTime | None
    payload: dict[str, Any]
