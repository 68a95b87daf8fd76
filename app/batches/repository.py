"""All SQL of batches: the API's reads and writes, and the workers' leases across projects."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.batches.models import RUNNABLE, Batch, BatchStatus
from app.kit.pagination import Order, Page
from app.kit.repository import claim_lease, keyset_page, leased, release_lease, renew_lease


class BatchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, batch: Batch) -> Batch:
        self.session.add(batch)
        await self.session.flush()
        return batch

    async def get(self, project_id: str, batch_id: str, *, for_update: bool = False) -> Batch | None:
        stmt = select(Batch).where(Batch.project_id == project_id, Batch.id == batch_id)
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def page(self, project_id: str, *, limit: int, order: Order, after: str | None) -> Page[Batch]:
        stmt = select(Batch).where(Batch.project_id == project_id)
        return await keyset_page(self.session, stmt, Batch, limit=limit, order=order, after=after)

    async def claim(self, worker_id: str, lease: timedelta) -> Batch | None:
        """Lease the oldest runnable batch to ``worker_id`` (queued, or held under an expired lease)."""
        return await claim_lease(self.session, Batch, RUNNABLE, worker_id, lease)

    async def renew(self, batch_id: str, worker_id: str, lease: timedelta) -> BatchStatus | None:
        """Extend our lease; the batch's status, or None when the lease is no longer ours."""
        status: BatchStatus | None = await renew_lease(self.session, Batch, batch_id, worker_id, lease)
        return status

    async def held(self, batch_id: str, worker_id: str) -> Batch | None:
        return await leased(self.session, Batch, batch_id, worker_id)

    async def release(self, batch_id: str, worker_id: str) -> None:
        await release_lease(self.session, Batch, batch_id, worker_id)
