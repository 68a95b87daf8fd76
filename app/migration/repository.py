"""All SQL of migrations: the API's reads and writes, and the workers' leases across projects."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.pagination import Order, Page
from app.kit.repository import keyset_page
from app.kit.time import utcnow
from app.migration.models import ACTIVE, Migration, MigrationStatus


class MigrationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, migration: Migration) -> Migration:
        self.session.add(migration)
        await self.session.flush()
        return migration

    async def get(self, project_id: str, migration_id: str, *, for_update: bool = False) -> Migration | None:
        stmt = select(Migration).where(Migration.project_id == project_id, Migration.id == migration_id)
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def page(self, project_id: str, *, limit: int, order: Order, after: str | None) -> Page[Migration]:
        stmt = select(Migration).where(Migration.project_id == project_id)
        return await keyset_page(self.session, stmt, Migration, limit=limit, order=order, after=after)

    async def claim(self, worker_id: str, lease: timedelta, now: datetime | None = None) -> Migration | None:
        """Atomically lease the oldest runnable migration to ``worker_id``: queued, or running under a lease that
        has expired (its worker died). A compare-and-set UPDATE guarantees one winner."""
        now = now or utcnow()
        runnable = and_(
            Migration.status.in_(list(ACTIVE)),
            or_(Migration.lease_owner.is_(None), Migration.lease_expires_at < now),
        )
        candidates = select(Migration.id).where(runnable).order_by(Migration.created_at, Migration.id).limit(1)
        if self._dialect() == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        migration_id = (await self.session.execute(candidates)).scalar()
        if migration_id is None:
            return None
        claimed = await self.session.execute(
            update(Migration)
            .where(Migration.id == migration_id, runnable)
            .values(
                lease_owner=worker_id,
                lease_expires_at=now + lease,
                attempts=Migration.attempts + 1,
                status=MigrationStatus.running,
            )
            .returning(Migration.id)
        )
        if claimed.scalar() is None:
            return None
        return await self.session.get(Migration, migration_id, populate_existing=True)

    async def renew(self, migration_id: str, worker_id: str, lease: timedelta) -> MigrationStatus | None:
        """Extend our lease; the migration's status, or None when the lease is no longer ours."""
        result = await self.session.execute(
            update(Migration)
            .where(Migration.id == migration_id, Migration.lease_owner == worker_id)
            .values(lease_expires_at=utcnow() + lease)
            .returning(Migration.status)
        )
        return result.scalar()

    async def held(self, migration_id: str, worker_id: str) -> Migration | None:
        stmt = select(Migration).where(Migration.id == migration_id, Migration.lease_owner == worker_id)
        return (await self.session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def release(self, migration_id: str, worker_id: str) -> None:
        await self.session.execute(
            update(Migration)
            .where(Migration.id == migration_id, Migration.lease_owner == worker_id)
            .values(lease_owner=None, lease_expires_at=None)
        )

    def _dialect(self) -> str:
        bind = self.session.bind
        return bind.dialect.name if bind is not None else ""
