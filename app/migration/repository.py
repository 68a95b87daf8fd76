"""All SQL of migrations: the API's reads and writes, and the workers' leases across projects."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.pagination import Order, Page
from app.kit.repository import claim_lease, keyset_page, leased, release_lease, renew_lease
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

    async def claim(self, worker_id: str, lease: timedelta) -> Migration | None:
        """Lease the oldest runnable migration to ``worker_id`` (queued, or held under an expired lease); it is
        running from now."""
        return await claim_lease(
            self.session, Migration, ACTIVE, worker_id, lease, values={"status": MigrationStatus.running}
        )

    async def renew(self, migration_id: str, worker_id: str, lease: timedelta) -> MigrationStatus | None:
        """Extend our lease; the migration's status, or None when the lease is no longer ours."""
        status: MigrationStatus | None = await renew_lease(self.session, Migration, migration_id, worker_id, lease)
        return status

    async def held(self, migration_id: str, worker_id: str) -> Migration | None:
        return await leased(self.session, Migration, migration_id, worker_id)

    async def release(self, migration_id: str, worker_id: str) -> None:
        await release_lease(self.session, Migration, migration_id, worker_id)
