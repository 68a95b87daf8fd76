"""All SQL of batches: the API's reads and writes, and the workers' leases across projects."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.batches.models import RUNNABLE, Batch, BatchStatus
from app.kit.pagination import Order, Page
from app.kit.repository import keyset_page
from app.kit.time import utcnow


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

    async def claim(self, worker_id: str, lease: timedelta, now: datetime | None = None) -> Batch | None:
        """Atomically lease the oldest runnable batch to ``worker_id``: queued, or running under a lease that
        has expired (its worker died). A compare-and-set UPDATE guarantees one winner."""
        now = now or utcnow()
        runnable = and_(
            Batch.status.in_(list(RUNNABLE)),
            or_(Batch.lease_owner.is_(None), Batch.lease_expires_at < now),
        )
        candidates = select(Batch.id).where(runnable).order_by(Batch.created_at, Batch.id).limit(1)
        if self._dialect() == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        batch_id = (await self.session.execute(candidates)).scalar()
        if batch_id is None:
            return None
        claimed = await self.session.execute(
            update(Batch)
            .where(Batch.id == batch_id, runnable)
            .values(
                lease_owner=worker_id,
                lease_expires_at=now + lease,
                attempts=Batch.attempts + 1,
            )
            .returning(Batch.id)
        )
        if claimed.scalar() is None:
            return None
        return await self.session.get(Batch, batch_id, populate_existing=True)

    async def renew(self, batch_id: str, worker_id: str, lease: timedelta) -> BatchStatus | None:
        """Extend our lease; the batch's status, or None when the lease is no longer ours."""
        result = await self.session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.lease_owner == worker_id)
            .values(lease_expires_at=utcnow() + lease)
            .returning(Batch.status)
        )
        return result.scalar()

    async def held(self, batch_id: str, worker_id: str) -> Batch | None:
        stmt = select(Batch).where(Batch.id == batch_id, Batch.lease_owner == worker_id)
        return (await self.session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def release(self, batch_id: str, worker_id: str) -> None:
        await self.session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.lease_owner == worker_id)
            .values(lease_owner=None, lease_expires_at=None)
        )

    def _dialect(self) -> str:
        bind = self.session.bind
        return bind.dialect.name if bind is not None else ""
