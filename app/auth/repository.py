"""All SQL for projects and API keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey, Project, Role
from app.kit.pagination import Order, Page
from app.kit.repository import keyset_page


class ProjectRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count(self) -> int:
        return (await self.session.execute(select(func.count()).select_from(Project))).scalar_one()

    async def get(self, project_id: str) -> Project | None:
        return await self.session.get(Project, project_id)

    async def get_by_name(self, name: str) -> Project | None:
        return (await self.session.execute(select(Project).where(Project.name == name))).scalar_one_or_none()

    async def add(self, project: Project) -> Project:
        self.session.add(project)
        await self.session.flush()
        return project

    async def page(self, *, limit: int, order: Order, after: str | None) -> Page[Project]:
        return await keyset_page(self.session, select(Project), Project, limit=limit, order=order, after=after)


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_active_by_hash(self, secret_hash: str) -> ApiKey | None:
        stmt = select(ApiKey).where(ApiKey.secret_hash == secret_hash, ApiKey.revoked_at.is_(None))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get(self, project_id: str, key_id: str) -> ApiKey | None:
        stmt = select(ApiKey).where(ApiKey.project_id == project_id, ApiKey.id == key_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def page(self, project_id: str, *, limit: int, order: Order, after: str | None) -> Page[ApiKey]:
        stmt = select(ApiKey).where(ApiKey.project_id == project_id)
        return await keyset_page(self.session, stmt, ApiKey, limit=limit, order=order, after=after)

    async def active_admins(self) -> Sequence[ApiKey]:
        stmt = select(ApiKey).where(ApiKey.role == Role.admin, ApiKey.revoked_at.is_(None))
        return (await self.session.execute(stmt)).scalars().all()
