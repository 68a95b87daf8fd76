"""All SQL for uploads and their parts; an upload is looked up within its project, parts within their upload."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.repository import compare_and_set
from app.uploads.models import Upload, UploadPart, UploadStatus


class UploadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, project_id: str, upload_id: str) -> Upload | None:
        stmt = select(Upload).where(Upload.project_id == project_id, Upload.id == upload_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, upload: Upload) -> Upload:
        self.session.add(upload)
        await self.session.flush()
        return upload

    async def reserve(self, upload: Upload, size: int, now: datetime) -> bool:
        """Count ``size`` more bytes against a pending, unexpired upload, only if the total stays within what it
        declared. One UPDATE, so parts sent side by side can never add up past it together."""
        stmt = (
            update(Upload)
            .where(
                Upload.id == upload.id,
                Upload.status == UploadStatus.pending,
                Upload.expires_at > now,
                Upload.received_bytes + size <= Upload.bytes,
            )
            .values(received_bytes=Upload.received_bytes + size)
            .returning(Upload.id)
        )
        moved = (await self.session.execute(stmt, execution_options={"synchronize_session": False})).scalar()
        await self.session.refresh(upload)
        return moved is not None

    async def transition(
        self,
        upload: Upload,
        to: UploadStatus,
        *,
        from_: Collection[UploadStatus] = (UploadStatus.pending,),
        values: Mapping[str, Any] | None = None,
    ) -> bool:
        """Compare-and-set the status: of a cancel, a completion and the upkeep racing, exactly one wins."""
        return await compare_and_set(self.session, upload, to, from_=from_, values=values)

    async def add_part(self, part: UploadPart) -> UploadPart:
        self.session.add(part)
        await self.session.flush()
        return part

    async def parts(self, upload_id: str, part_ids: Collection[str]) -> dict[str, UploadPart]:
        """The upload's parts among ``part_ids``, by id (an id of no part of this upload is simply absent)."""
        stmt = select(UploadPart).where(UploadPart.upload_id == upload_id, UploadPart.id.in_(list(part_ids)))
        return {part.id: part for part in (await self.session.execute(stmt)).scalars()}

    async def delete_parts(self, upload_id: str) -> None:
        await self.session.execute(delete(UploadPart).where(UploadPart.upload_id == upload_id))

    # --- the upkeep's view: across projects ------------------------------------------------------------------

    async def overdue(self, now: datetime, limit: int = 500) -> Sequence[Upload]:
        """Pending uploads past their expiry."""
        stmt = (
            select(Upload)
            .where(Upload.status == UploadStatus.pending, Upload.expires_at <= now)
            .order_by(Upload.expires_at)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def pending_among(self, upload_ids: Collection[str]) -> set[str]:
        stmt = select(Upload.id).where(Upload.id.in_(list(upload_ids)), Upload.status == UploadStatus.pending)
        return set((await self.session.execute(stmt)).scalars())
