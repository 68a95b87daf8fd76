"""All SQL for the files table, always scoped to a project."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.files.models import FilePurpose, FileStatus, StoredFile
from app.kit.pagination import Order, Page
from app.kit.repository import keyset_page
from app.kit.time import utcnow


class FileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _visible(project_id: str) -> Select[StoredFile]:
        now = utcnow()
        return select(StoredFile).where(
            StoredFile.project_id == project_id,
            or_(StoredFile.expires_at.is_(None), StoredFile.expires_at > now),
        )

    async def get(self, project_id: str, file_id: str) -> StoredFile | None:
        stmt = self._visible(project_id).where(StoredFile.id == file_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, file: StoredFile) -> StoredFile:
        self.session.add(file)
        await self.session.flush()
        return file

    async def delete(self, file: StoredFile) -> None:
        await self.session.delete(file)
        await self.session.flush()

    async def page(
        self, project_id: str, *, purpose: FilePurpose | None, limit: int, order: Order, after: str | None
    ) -> Page[StoredFile]:
        stmt = self._visible(project_id)
        if purpose is not None:
            stmt = stmt.where(StoredFile.purpose == purpose)
        return await keyset_page(self.session, stmt, StoredFile, limit=limit, order=order, after=after)

    async def expired(self, now: datetime, limit: int = 500) -> Sequence[StoredFile]:
        stmt = select(StoredFile).where(StoredFile.expires_at <= now).limit(limit)
        return (await self.session.execute(stmt)).scalars().all()

    async def pending_validation(self, limit: int = 10_000) -> list[tuple[str, str]]:
        """(project_id, file_id) of fine-tune files still waiting for validation, across projects (upkeep only)."""
        stmt = (
            select(StoredFile.project_id, StoredFile.id)
            .where(StoredFile.status == FileStatus.uploaded, StoredFile.purpose == FilePurpose.fine_tune)
            .order_by(StoredFile.created_at)
            .limit(limit)
        )
        return [(row.project_id, row.id) for row in await self.session.execute(stmt)]
