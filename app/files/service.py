"""Files: validate an upload, place its blob, record it; list, fetch and delete, always within one project."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import after_commit, after_rollback
from app.errors import InvalidRequest, NotFound
from app.files.models import UPLOADABLE_PURPOSES, FilePurpose, FileStatus, StoredFile
from app.files.repository import FileRepository
from app.files.storage import BlobStore
from app.files.upload import ReceivedForm
from app.kit.ids import new_id
from app.kit.numbers import parse_decimal
from app.kit.pagination import Order, Page
from app.kit.time import utcnow

log = logging.getLogger(__name__)

MIN_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS = 3600, 2_592_000


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def parse_purpose(value: str) -> FilePurpose:
    allowed = ", ".join(f"'{p.value}'" for p in UPLOADABLE_PURPOSES)
    try:
        purpose = FilePurpose(value)
    except ValueError:
        purpose = None
    if purpose not in UPLOADABLE_PURPOSES:
        raise InvalidRequest(
            f"'{value}' is not a valid purpose for an upload. Expected one of: {allowed}.", param="purpose"
        )
    assert purpose is not None
    return purpose


def _expiry_seconds(fields: dict[str, str]) -> int | None:
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("expires_after.anchor must be 'created_at'.", param="expires_after.anchor")
    value = parse_decimal(seconds.strip()) if seconds is not None else None
    if value is None:
        raise InvalidRequest("expires_after.seconds must be an integer (ASCII digits).", param="expires_after.seconds")
    if not MIN_EXPIRY_SECONDS <= value <= MAX_EXPIRY_SECONDS:
        raise InvalidRequest(
            f"expires_after.seconds must be between {MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS}.",
            param="expires_after.seconds",
        )
    return value


def _clean_filename(raw: str) -> str:
    # Browsers and SDKs may send a full client path; keep the last component only, under either convention
    # (only separators cut: 'a:b.jsonl' is a name, not a drive).
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip() or "upload"
    return name[-512:]


class FileService:
    async def create(self, session: AsyncSession, store: BlobStore, project_id: str, form: ReceivedForm) -> StoredFile:
        if form.file is None:
            raise _missing("file")
        if "purpose" not in form.fields:
            raise _missing("purpose")
        purpose = parse_purpose(form.fields["purpose"].strip())
        expiry = _expiry_seconds(form.fields)
        if form.file.bytes == 0:
            raise InvalidRequest("The uploaded file is empty.", param="file", code="empty_file")
        return await self.store_blob(
            session,
            store,
            project_id,
            temp_path=form.file.temp_path,
            filename=form.file.filename,
            purpose=purpose,
            size=form.file.bytes,
            sha256=form.file.sha256,
            expires_in=expiry,
        )

    async def store_blob(
        self,
        session: AsyncSession,
        store: BlobStore,
        project_id: str,
        *,
        temp_path: Path,
        filename: str,
        purpose: FilePurpose,
        size: int,
        sha256: str,
        expires_in: int | None = None,
        source_file_id: str | None = None,
    ) -> StoredFile:
        """Move a finished temp file into place and record it: the blob first, the row after.

        Fine-tune files start ``uploaded`` (validation follows); everything else is ``processed`` at once.
        """
        file_id = new_id("file")
        key = f"{project_id}/{file_id}"
        store.put(temp_path, key)
        after_rollback(session, lambda: store.delete(key))
        now = utcnow()
        record = StoredFile(
            id=file_id,
            project_id=project_id,
            filename=_clean_filename(filename),
            purpose=purpose,
            bytes=size,
            sha256=sha256,
            status=FileStatus.uploaded if purpose is FilePurpose.fine_tune else FileStatus.processed,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
            storage_key=key,
            source_file_id=source_file_id,
        )
        return await FileRepository(session).add(record)

    async def get(self, session: AsyncSession, project_id: str, file_id: str) -> StoredFile:
        record = await FileRepository(session).get(project_id, file_id)
        if record is None:
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        return record

    async def list(
        self,
        session: AsyncSession,
        project_id: str,
        *,
        purpose: str | None,
        limit: int,
        order: Order,
        after: str | None,
    ) -> Page[StoredFile]:
        try:
            wanted = FilePurpose(purpose) if purpose else None
        except ValueError:
            allowed = ", ".join(f"'{p.value}'" for p in FilePurpose)
            raise InvalidRequest(
                f"'{purpose}' is not a purpose. Expected one of: {allowed}.", param="purpose"
            ) from None
        return await FileRepository(session).page(project_id, purpose=wanted, limit=limit, order=order, after=after)

    async def content_path(
        self, session: AsyncSession, store: BlobStore, project_id: str, file_id: str
    ) -> tuple[StoredFile, Path]:
        record = await self.get(session, project_id, file_id)
        path = store.path(record.storage_key)
        if not path.is_file():
            log.error("blob of %s is missing at %s", file_id, path)
            raise NotFound(f"The content of file {file_id} is no longer available.", param="file_id")
        return record, path

    async def delete(self, session: AsyncSession, store: BlobStore, project_id: str, file_id: str) -> StoredFile:
        record = await self.get(session, project_id, file_id)
        await FileRepository(session).delete(record)
        key = record.storage_key
        # The blob goes only once the row is gone for good: a failed commit keeps both.
        after_commit(session, lambda: store.delete(key))
        return record

    async def purge_expired(self, session: AsyncSession, store: BlobStore) -> int:
        repo = FileRepository(session)
        expired = await repo.expired(utcnow())
        for record in expired:
            await repo.delete(record)
            key = record.storage_key
            after_commit(session, lambda key=key: store.delete(key))  # type: ignore[misc]
        return len(expired)


file_service = FileService()
