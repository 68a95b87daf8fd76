"""Project and API key logic, including the first-start bootstrap."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.keys import generate_secret, hash_secret, redact
from app.auth.models import ApiKey, Project, Role
from app.auth.repository import ApiKeyRepository, ProjectRepository
from app.auth.schemas import RateLimits
from app.errors import Conflict, NotFound
from app.kit.ids import new_id
from app.kit.pagination import Order, Page
from app.kit.time import utcnow

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "default"


class AuthService:
    async def create_project(self, session: AsyncSession, name: str) -> Project:
        repo = ProjectRepository(session)
        if await repo.get_by_name(name) is not None:
            raise Conflict(f"A project named '{name}' already exists.", param="name", code="project_exists")
        return await repo.add(Project(id=new_id("proj", 20), name=name))

    async def get_project(self, session: AsyncSession, project_id: str) -> Project:
        project = await ProjectRepository(session).get(project_id)
        if project is None:
            raise NotFound(f"No project found with id '{project_id}'.", param="project_id")
        return project

    async def find_project(self, session: AsyncSession, id_or_name: str) -> Project:
        """A project by its id or, failing that, its name (the operator's CLI names ``default``)."""
        repo = ProjectRepository(session)
        project = await repo.get(id_or_name) or await repo.get_by_name(id_or_name)
        if project is None:
            raise NotFound(f"No project found with id or name '{id_or_name}'.", param="project_id")
        return project

    async def list_projects(
        self, session: AsyncSession, *, limit: int, order: Order, after: str | None
    ) -> Page[Project]:
        return await ProjectRepository(session).page(limit=limit, order=order, after=after)

    async def create_key(
        self,
        session: AsyncSession,
        project_id: str,
        *,
        name: str,
        role: Role,
        secret: str | None = None,
        limits: RateLimits | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret. The secret is returned here once and never stored."""
        await self.get_project(session, project_id)
        secret = secret or generate_secret()
        key = ApiKey(
            id=new_id("key", 20),
            project_id=project_id,
            name=name,
            role=role,
            secret_hash=hash_secret(secret),
            redacted_value=redact(secret),
            **(limits.model_dump() if limits else {}),
        )
        return await ApiKeyRepository(session).add(key), secret

    async def list_keys(
        self, session: AsyncSession, project_id: str, *, limit: int, order: Order, after: str | None
    ) -> Page[ApiKey]:
        await self.get_project(session, project_id)
        return await ApiKeyRepository(session).page(project_id, limit=limit, order=order, after=after)

    async def set_limits(self, session: AsyncSession, project_id: str, key_id: str, limits: RateLimits) -> ApiKey:
        key = await self._key(session, project_id, key_id)
        for field, value in limits.model_dump(exclude_unset=True).items():
            setattr(key, field, value)
        await session.flush()
        return key

    async def _key(self, session: AsyncSession, project_id: str, key_id: str) -> ApiKey:
        key = await ApiKeyRepository(session).get(project_id, key_id)
        if key is None:
            raise NotFound(f"No API key found with id '{key_id}'.", param="key_id")
        return key

    async def revoke_key(self, session: AsyncSession, project_id: str, key_id: str) -> ApiKey:
        repo = ApiKeyRepository(session)
        key = await self._key(session, project_id, key_id)
        if key.revoked_at is None:
            admins = await repo.active_admins()
            if key.role is Role.admin and [k.id for k in admins] == [key.id]:
                raise Conflict(
                    "This is the last active admin key; create another admin key before revoking it.",
                    param="key_id",
                    code="last_admin_key",
                )
            key.revoked_at = utcnow()
            await session.flush()
        return key

    async def bootstrap(self, session: AsyncSession, bootstrap_key: str | None) -> str | None:
        """On an empty database, create the ``default`` project and its first admin key.

        Returns the secret when ftgw generated it (the caller shows it once), None when there was nothing to do
        or the operator supplied the key through ``FTGW_BOOTSTRAP_KEY``.
        """
        if await ProjectRepository(session).count() > 0:
            return None
        project = await self.create_project(session, DEFAULT_PROJECT)
        _, secret = await self.create_key(session, project.id, name="bootstrap", role=Role.admin, secret=bootstrap_key)
        log.info("bootstrapped project %s with its first admin key", project.id)
        return None if bootstrap_key else secret


auth_service = AuthService()
