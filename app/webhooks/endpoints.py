"""/v1/webhooks: a project's webhook endpoints and the log of their deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.auth.principal import PrincipalDep
from app.db import SessionDep
from app.kit.netguard import NetworkPolicy
from app.kit.schemas import ListResponse
from app.webhooks.schemas import DeliveryOut, WebhookCreate, WebhookCreated, WebhookDeleted, WebhookOut
from app.webhooks.service import webhook_service

router = APIRouter(prefix="/v1/webhooks", tags=["Webhooks"])


def get_network_policy(request: Request) -> NetworkPolicy:
    policy: NetworkPolicy = request.app.state.network_policy
    return policy


NetworkPolicyDep = Annotated[NetworkPolicy, Depends(get_network_policy)]


@router.post("", response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate, session: SessionDep, principal: PrincipalDep, policy: NetworkPolicyDep
) -> WebhookCreated:
    """Register a URL for job outcomes (public addresses only; no credentials); the signing `secret` is shown once."""
    webhook = await webhook_service.create(session, policy, principal.project_id, str(body.url), body.events)
    return WebhookCreated.model_validate(webhook)


@router.get("", response_model=ListResponse[WebhookOut])
async def list_webhooks(session: SessionDep, principal: PrincipalDep) -> ListResponse[WebhookOut]:
    """List the project's webhooks."""
    hooks = await webhook_service.list(session, principal.project_id)
    return ListResponse.of([WebhookOut.model_validate(h) for h in hooks], False)


@router.delete("/{webhook_id}", response_model=WebhookDeleted)
async def delete_webhook(webhook_id: str, session: SessionDep, principal: PrincipalDep) -> WebhookDeleted:
    """Delete a webhook; its pending deliveries go with it."""
    await webhook_service.delete(session, principal.project_id, webhook_id)
    return WebhookDeleted(id=webhook_id)


@router.get("/{webhook_id}/deliveries", response_model=ListResponse[DeliveryOut])
async def list_deliveries(webhook_id: str, session: SessionDep, principal: PrincipalDep) -> ListResponse[DeliveryOut]:
    """The webhook's deliveries, newest first, with attempts and the last error."""
    deliveries = await webhook_service.deliveries(session, principal.project_id, webhook_id)
    return ListResponse.of([DeliveryOut.model_validate(d) for d in deliveries], False)
