"""All SQL for webhooks and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: Webhook | WebhookDelivery) -> None:
        self.session.add(row)
        await self.session.flush()

    async def get(self, project_id: str, webhook_id: str) -> Webhook | None:
        stmt = select(Webhook).where(Webhook.project_id == project_id, Webhook.id == webhook_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def of_project(self, project_id: str) -> Sequence[Webhook]:
        stmt = select(Webhook).where(Webhook.project_id == project_id).order_by(Webhook.created_at, Webhook.id)
        return (await self.session.execute(stmt)).scalars().all()

    async def delete(self, webhook: Webhook) -> None:
        await self.session.delete(webhook)
        await self.session.flush()

    async def deliveries(self, project_id: str, webhook_id: str) -> Sequence[WebhookDelivery]:
        stmt = (
            select(WebhookDelivery)
            .where(WebhookDelivery.project_id == project_id, WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def claim_due(self, now: datetime, lock_for: timedelta, limit: int = 20) -> list[str]:
        """Ids of due deliveries, locked for this dispatcher (compare-and-set, safe across processes)."""
        due = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DeliveryStatus.pending,
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        claimed = []
        for delivery_id in (await self.session.execute(due)).scalars().all():
            result = await self.session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
                )
                .values(locked_until=now + lock_for)
                .returning(WebhookDelivery.id)
            )
            if result.scalar() is not None:
                claimed.append(delivery_id)
        return claimed

    async def delivery_with_hook(self, delivery_id: str) -> tuple[WebhookDelivery, Webhook] | None:
        stmt = (
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
        )
        row = (await self.session.execute(stmt)).one_or_none()
        return (row[0], row[1]) if row else None
