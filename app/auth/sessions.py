"""Console sign-ins: an HttpOnly cookie holding a random token, bound to an API key, the project the console acts in
and a CSRF token.

The API key is checked once, at sign-in, and never leaves the server again: the browser holds only the session
token (its hash is stored, as for keys). A cookie-authenticated request that changes anything must echo the
session's CSRF token in ``X-CSRF-Token`` (a form field for plain HTML forms); the cookie is also SameSite=Strict.
Revoking the key ends its sessions at once: a session is resolved together with its key on every request.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.keys import hash_secret
from app.auth.models import ApiKey, ConsoleSession, Project, Role
from app.auth.repository import ApiKeyRepository, ProjectRepository
from app.errors import AuthenticationFailed, NotFound, PermissionDenied
from app.kit.ids import random_token
from app.kit.time import utcnow

SESSION_COOKIE = "ftgw_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A live console session with its key (resolved together on every request)."""

    row: ConsoleSession
    key: ApiKey

    @property
    def is_admin(self) -> bool:
        return self.key.role is Role.admin

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.row.csrf_token.encode())


class ConsoleSessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_live(self, token_hash: str, now: datetime) -> tuple[ConsoleSession, ApiKey] | None:
        stmt = (
            select(ConsoleSession, ApiKey)
            .join(ApiKey, ApiKey.id == ConsoleSession.key_id)
            .where(
                ConsoleSession.token_hash == token_hash,
                ConsoleSession.expires_at > now,
                ApiKey.revoked_at.is_(None),
            )
        )
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else (row[0], row[1])

    async def add(self, row: ConsoleSession) -> ConsoleSession:
        self.session.add(row)
        await self.session.flush()
        return row

    async def delete(self, token_hash: str) -> None:
        await self.session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash))

    async def delete_expired(self, now: datetime) -> None:
        await self.session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))


class ConsoleSessionService:
    async def sign_in(self, session: AsyncSession, secret: str, lifetime: timedelta) -> tuple[str, SignedIn]:
        """Check the key and open a session; returns the cookie token (shown once) and the session."""
        key = await ApiKeyRepository(session).get_active_by_hash(hash_secret(secret.strip()))
        if key is None:
            raise AuthenticationFailed("Incorrect API key provided. The key is unknown or has been revoked.")
        now = utcnow()
        repository = ConsoleSessionRepository(session)
        await repository.delete_expired(now)
        token = random_token(43)
        row = ConsoleSession(
            token_hash=hash_secret(token),
            key_id=key.id,
            project_id=key.project_id,
            csrf_token=random_token(43),
            expires_at=now + lifetime,
        )
        await repository.add(row)
        return token, SignedIn(row, key)

    async def resolve(self, session: AsyncSession, token: str) -> SignedIn | None:
        found = await ConsoleSessionRepository(session).get_live(hash_secret(token), utcnow())
        return None if found is None else SignedIn(*found)

    async def switch_project(self, session: AsyncSession, signed_in: SignedIn, project_id: str) -> Project:
        """Act in another project: admins only, and only in a project that exists."""
        if not signed_in.is_admin:
            raise PermissionDenied("Only an admin key can switch projects.")
        project = await ProjectRepository(session).get(project_id)
        if project is None:
            raise NotFound(f"No project found with id '{project_id}'.", param="project_id")
        row = await session.merge(signed_in.row)
        row.project_id = project.id
        await session.flush()
        return project

    async def sign_out(self, session: AsyncSession, token: str) -> None:
        await ConsoleSessionRepository(session).delete(hash_secret(token))


console_sessions = ConsoleSessionService()
