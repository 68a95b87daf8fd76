"""Registering webhooks, queueing deliveries in the transaction of what they tell (a job's or an eval run's outcome),
and sending them with retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import after_commit, commit
from app.errors import InvalidRequest, NotFound
from app.fine_tuning.models import FineTuningJob
from app.kit.ids import new_id
from app.kit.netguard import NetworkPolicy, URLRefused
from app.kit.time import unix, utcnow
from app.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery
from app.webhooks.repository import WebhookRepository
from app.webhooks.signing import signature

log = logging.getLogger(__name__)

# What a receiver's owner reads when a try fails below HTTP: one text for refused, closed, timed out, TLS and policy
# failures alike, so deliveries cannot be used to tell which ports and addresses exist (the log has the detail).
CONNECTION_FAILED = "could not deliver: connection failed"


def network_policy(settings: Settings) -> NetworkPolicy:
    """Where webhooks may be delivered under these settings."""
    return NetworkPolicy(allow_private=settings.webhook_allow_private_networks)


class WebhookService:
    async def create(
        self, session: AsyncSession, policy: NetworkPolicy, project_id: str, url: str, events: list[str]
    ) -> Webhook:
        """A new webhook, if ``url`` reaches only addresses the policy allows (it is checked again at each try)."""
        try:
            await policy.check_url(url)
        except URLRefused as exc:
            raise InvalidRequest(str(exc), param="url") from None
        webhook = Webhook(
            id=new_id("wh"), project_id=project_id, url=url, events=events, secret="whsec_" + secrets.token_hex(24)
        )
        await WebhookRepository(session).add(webhook)
        return webhook

    async def get(self, session: AsyncSession, project_id: str, webhook_id: str) -> Webhook:
        webhook = await WebhookRepository(session).get(project_id, webhook_id)
        if webhook is None:
            raise NotFound(f"No such webhook: {webhook_id}", param="webhook_id")
        return webhook

    async def list(self, session: AsyncSession, project_id: str) -> Sequence[Webhook]:
        return await WebhookRepository(session).of_project(project_id)

    async def delete(self, session: AsyncSession, project_id: str, webhook_id: str) -> None:
        await WebhookRepository(session).delete(await self.get(session, project_id, webhook_id))

    async def deliveries(self, session: AsyncSession, project_id: str, webhook_id: str) -> Sequence[WebhookDelivery]:
        webhook = await self.get(session, project_id, webhook_id)
        return await WebhookRepository(session).deliveries(project_id, webhook.id)

    async def enqueue(
        self,
        session: AsyncSession,
        project_id: str,
        event_type: str,
        data: dict[str, Any],
        wakeup: asyncio.Event | None,
    ) -> int:
        """Queue ``event_type`` (its payload's ``data`` as given) for every webhook of the project subscribed to it,
        in the caller's transaction: the event and what it tells of land together, or neither. How many were
        queued; ``wakeup`` (the dispatcher's) is set once the transaction commits."""
        repo = WebhookRepository(session)
        now = utcnow()
        queued = 0
        for webhook in await repo.of_project(project_id):
            if event_type not in webhook.events:
                continue
            delivery_id = new_id("evt")
            payload = {"id": delivery_id, "object": "event", "type": event_type, "created_at": unix(now), "data": data}
            await repo.add(
                WebhookDelivery(
                    id=delivery_id,
                    project_id=project_id,
                    webhook_id=webhook.id,
                    event_type=event_type,
                    payload=payload,
                    status=DeliveryStatus.pending,
                    attempts=0,
                    next_attempt_at=now,
                )
            )
            queued += 1
        if queued and wakeup is not None:
            after_commit(session, wakeup.set)
        return queued

    async def enqueue_job_outcome(
        self, session: AsyncSession, job: FineTuningJob, wakeup: asyncio.Event | None
    ) -> None:
        """Queue ``fine_tuning.job.<status>`` for every matching webhook, in the job's own transaction."""
        data = {"id": job.id, "status": job.status.value, "fine_tuned_model": job.fine_tuned_model}
        await self.enqueue(session, job.project_id, f"fine_tuning.job.{job.status.value}", data, wakeup)


class Dispatcher:
    """Sends due deliveries; a failure is retried with exponential backoff, never blocking anything else."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        backoff_seconds: float,
        max_attempts: int,
        timeout_seconds: float,
        wakeup: asyncio.Event,
        policy: NetworkPolicy,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policy = policy
        self.backoff = backoff_seconds
        self.max_attempts = max_attempts
        self.timeout = timeout_seconds
        self.wakeup = wakeup

    @classmethod
    def from_settings(
        cls,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        wakeup: asyncio.Event,
        policy: NetworkPolicy | None = None,
    ) -> Dispatcher:
        return cls(
            sessionmaker,
            backoff_seconds=settings.webhook_backoff_seconds,
            max_attempts=settings.webhook_max_attempts,
            timeout_seconds=settings.webhook_timeout_seconds,
            wakeup=wakeup,
            policy=policy or network_policy(settings),
        )

    async def run_forever(self, poll_seconds: float = 1.0) -> None:
        # Every try is checked against the policy at connect time (DNS may have changed since registration);
        # a redirect is a failed try, never followed.
        transport = self.policy.transport()
        async with httpx.AsyncClient(transport=transport, timeout=self.timeout, follow_redirects=False) as client:
            while True:
                try:
                    await self.deliver_due(client)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhook dispatch round failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), poll_seconds)
                self.wakeup.clear()

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        async with self.sessionmaker() as session:
            ids = await WebhookRepository(session).claim_due(utcnow(), timedelta(seconds=self.timeout * 2))
            await commit(session)
        await asyncio.gather(*(self._deliver(client, delivery_id) for delivery_id in ids))
        return len(ids)

    async def _deliver(self, client: httpx.AsyncClient, delivery_id: str) -> None:
        async with self.sessionmaker() as session:
            found = await WebhookRepository(session).delivery_with_hook(delivery_id)
            if found is None:
                return
            delivery, webhook = found
            body = json.dumps(delivery.payload, separators=(",", ":")).encode()
            timestamp = unix(utcnow())
            headers = {
                "content-type": "application/json",
                "user-agent": "ftgw-webhooks",
                "ftgw-webhook-id": delivery.id,
                "ftgw-webhook-timestamp": str(timestamp),
                "ftgw-signature": signature(webhook.secret, delivery.id, timestamp, body),
            }
            error: str | None = None
            try:
                # One deadline for the whole try (resolving, each address, the answer), well inside the claim's
                # lock. Streamed and left unread: only the status matters, whatever the receiver answers with.
                async with (
                    asyncio.timeout(self.timeout),
                    client.stream("POST", webhook.url, content=body, headers=headers) as response,
                ):
                    if not 200 <= response.status_code < 300:
                        error = f"could not deliver: HTTP {response.status_code}"
            except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
                log.info("webhook delivery %s to %s failed: %r", delivery.id, webhook.id, exc)
                error = CONNECTION_FAILED
            delivery.attempts += 1
            delivery.locked_until = None
            if error is None:
                delivery.status = DeliveryStatus.delivered
                delivery.delivered_at = utcnow()
                delivery.last_error = None
            else:
                delivery.last_error = error[:2000]
                if delivery.attempts >= self.max_attempts:
                    delivery.status = DeliveryStatus.failed
                    log.warning(
                        "webhook delivery %s gave up after %d attempts: %s", delivery.id, delivery.attempts, error
                    )
                else:
                    delay = self.backoff * 2 ** (delivery.attempts - 1)
                    delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)
            await commit(session)


webhook_service = WebhookService()
