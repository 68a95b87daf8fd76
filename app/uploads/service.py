"""Uploads: start one, take its parts, assemble them into a File, cancel, expire; always within one project.

Nothing is stored half-way: a part is counted and recorded in one transaction (its bytes removed if that rolls
back), and completing writes the File's blob, its row and the upload's new status together, the blob removed again
if the commit fails (``FileService.store_blob``). Parts leave the disk only once the change that ends their upload
has committed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import MiB
from app.db import after_commit, after_rollback
from app.errors import InvalidRequest, NotFound, PayloadTooLarge
from app.files.models import StoredFile
from app.files.repository import FileRepository
from app.files.service import file_service, parse_purpose
from app.files.upload import ReceivedFile
from app.kit.ids import new_id
from app.kit.time import utcnow
from app.uploads.models import Upload, UploadPart, UploadStatus, current_status
from app.uploads.parts import PartStore
from app.uploads.repository import UploadRepository
from app.uploads.schemas import CreateUploadRequest

log = logging.getLogger(__name__)

# OpenAI's limits: an upload lives an hour, a part holds at most 64 MB (the SDK's default part size).
UPLOAD_LIFETIME = timedelta(hours=1)
MAX_PART_BYTES = 64 * MiB

# type/subtype as RFC 6838 names them; parameters (``; charset=utf-8``) may follow.
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_MD5 = re.compile(r"[0-9a-f]{32}")


def _not_open(upload: Upload, action: str) -> InvalidRequest:
    status = current_status(upload)
    why = " (an upload expires one hour after it is created)" if status is UploadStatus.expired else ""
    # 400 as OpenAI answers a request that does not fit an object's state (app.fine_tuning's jobs do the same).
    return InvalidRequest(
        f"Cannot {action} upload {upload.id}: it is {status.value}{why}.",
        param="upload_id",
        code="invalid_upload_state",
    )


def _require_pending(upload: Upload, action: str) -> None:
    if current_status(upload) is not UploadStatus.pending:
        raise _not_open(upload, action)


def _check_part_ids(part_ids: Sequence[str]) -> None:
    if not part_ids:
        raise InvalidRequest("part_ids must list the upload's parts in the order of the file.", param="part_ids")
    seen: set[str] = set()
    for part_id in part_ids:
        if part_id in seen:
            raise InvalidRequest(f"Part {part_id} is listed more than once.", param="part_ids")
        seen.add(part_id)


class UploadService:
    async def create(
        self, session: AsyncSession, project_id: str, request: CreateUploadRequest, max_bytes: int
    ) -> Upload:
        purpose = parse_purpose(request.purpose.strip())
        if request.bytes < 1:
            raise InvalidRequest("bytes must be at least 1: a file cannot be empty.", param="bytes", code="empty_file")
        if request.bytes > max_bytes:
            raise PayloadTooLarge(
                f"The file would be {request.bytes} bytes; this gateway accepts files up to {max_bytes} bytes.",
                param="bytes",
            )
        mime_type = request.mime_type.strip()
        if not _MIME_TYPE.fullmatch(mime_type.split(";", 1)[0].strip()):
            raise InvalidRequest(
                f"'{mime_type}' is not a MIME type: expected type/subtype, such as application/jsonl.",
                param="mime_type",
            )
        now = utcnow()
        upload = Upload(
            id=new_id("upload", separator="_"),
            project_id=project_id,
            filename=request.filename,
            purpose=purpose,
            bytes=request.bytes,
            mime_type=mime_type,
            status=UploadStatus.pending,
            created_at=now,
            expires_at=now + UPLOAD_LIFETIME,
            received_bytes=0,
            file_expires_in=request.expires_after.seconds if request.expires_after else None,
        )
        return await UploadRepository(session).add(upload)

    async def get(self, session: AsyncSession, project_id: str, upload_id: str) -> Upload:
        upload = await UploadRepository(session).get(project_id, upload_id)
        if upload is None:
            raise NotFound(f"No such Upload object: {upload_id}", param="upload_id")
        return upload

    async def file_of(self, session: AsyncSession, upload: Upload) -> StoredFile | None:
        """The File a completed upload made, while it exists."""
        if upload.file_id is None:
            return None
        return await FileRepository(session).get(upload.project_id, upload.file_id)

    async def open_for_parts(
        self, sessionmaker: async_sessionmaker[AsyncSession], project_id: str, upload_id: str
    ) -> Upload:
        """The upload a part is for, looked at before its bytes are read (an unknown or closed upload is refused at
        once), in a session of its own: no database connection waits on the client's transfer."""
        async with sessionmaker() as session:
            upload = await self.get(session, project_id, upload_id)
        _require_pending(upload, "add parts to")
        return upload

    @staticmethod
    def part_limit(upload: Upload) -> int:
        """The most a part of ``upload`` may hold: OpenAI's part size, or what is left of the declared bytes."""
        return min(MAX_PART_BYTES, upload.bytes - upload.received_bytes)

    async def add_part(
        self, session: AsyncSession, parts: PartStore, project_id: str, upload_id: str, received: ReceivedFile | None
    ) -> UploadPart:
        if received is None:
            raise InvalidRequest("Missing required parameter: 'data'.", param="data", code="missing_required_parameter")
        if received.bytes == 0:
            raise InvalidRequest("The part is empty.", param="data", code="empty_file")
        repo = UploadRepository(session)
        upload = await self.get(session, project_id, upload_id)
        now = utcnow()
        if not await repo.reserve(upload, received.bytes, now):
            _require_pending(upload, "add parts to")
            raise InvalidRequest(
                f"This part ({received.bytes} bytes) would take upload {upload.id} to "
                f"{upload.received_bytes + received.bytes} bytes, past the {upload.bytes} it was created for.",
                param="data",
                code="upload_too_large",
            )
        part = UploadPart(id=new_id("part", separator="_"), upload_id=upload.id, bytes=received.bytes, created_at=now)
        parts.put(received.temp_path, upload.id, part.id)
        path = parts.path(upload.id, part.id)
        after_rollback(session, lambda: path.unlink(missing_ok=True))
        return await repo.add_part(part)

    async def complete(
        self,
        session: AsyncSession,
        parts: PartStore,
        project_id: str,
        upload_id: str,
        part_ids: Sequence[str],
        md5: str | None,
    ) -> tuple[Upload, StoredFile]:
        """Assemble the parts in the given order into a new File; the upload is then completed and its parts go."""
        repo = UploadRepository(session)
        upload = await self.get(session, project_id, upload_id)
        _require_pending(upload, "complete")
        _check_part_ids(part_ids)
        wanted_md5 = md5.strip().lower() if md5 is not None else None
        if wanted_md5 is not None and not _MD5.fullmatch(wanted_md5):
            raise InvalidRequest("md5 must be 32 hexadecimal digits.", param="md5")
        found = await repo.parts(upload.id, part_ids)
        for part_id in part_ids:
            if part_id not in found:
                raise InvalidRequest(
                    f"Part {part_id} is not a part of upload {upload.id}.", param="part_ids", code="invalid_part"
                )
        total = sum(found[part_id].bytes for part_id in part_ids)
        if total != upload.bytes:
            raise InvalidRequest(
                f"The parts hold {total} bytes; upload {upload.id} was created for {upload.bytes}.",
                param="part_ids",
                code="upload_size_mismatch",
            )
        try:
            # Gigabytes of copying: off the event loop.
            assembled = await asyncio.to_thread(parts.assemble, upload.id, part_ids)
        except FileNotFoundError as exc:
            log.error("a part of %s is missing on disk: %s", upload.id, exc.filename)
            raise InvalidRequest(
                f"The bytes of a part of upload {upload.id} are no longer available; add it again.",
                param="part_ids",
                code="part_missing",
            ) from None
        try:
            if assembled.bytes != upload.bytes:
                log.error("the parts of %s hold %d bytes on disk, %d recorded", upload.id, assembled.bytes, total)
                raise InvalidRequest(
                    f"The parts of upload {upload.id} no longer hold {upload.bytes} bytes; add them again.",
                    param="part_ids",
                    code="upload_size_mismatch",
                )
            if wanted_md5 is not None and assembled.md5 != wanted_md5:
                raise InvalidRequest(
                    f"The md5 of the assembled parts is {assembled.md5}, not {wanted_md5}: nothing was stored.",
                    param="md5",
                    code="md5_mismatch",
                )
            record = await file_service.store_blob(
                session,
                parts.store,
                project_id,
                temp_path=assembled.temp_path,
                filename=upload.filename,
                purpose=upload.purpose,
                size=assembled.bytes,
                sha256=assembled.sha256,
                expires_in=upload.file_expires_in,
            )
        finally:
            assembled.temp_path.unlink(missing_ok=True)  # already moved into place, unless it was refused
        if not await repo.transition(upload, UploadStatus.completed, values={"file_id": record.id}):
            raise _not_open(upload, "complete")  # cancelled or expired meanwhile: the rollback removes the blob
        await self._drop_parts(session, parts, upload.id)
        return upload, record

    async def cancel(self, session: AsyncSession, parts: PartStore, project_id: str, upload_id: str) -> Upload:
        repo = UploadRepository(session)
        upload = await self.get(session, project_id, upload_id)
        _require_pending(upload, "cancel")
        if not await repo.transition(upload, UploadStatus.cancelled):
            raise _not_open(upload, "cancel")
        await self._drop_parts(session, parts, upload.id)
        return upload

    async def expire_overdue(self, session: AsyncSession, parts: PartStore) -> int:
        """Record pending uploads past their expiry as expired, and drop their parts (upkeep, across projects)."""
        repo = UploadRepository(session)
        expired = 0
        for upload in await repo.overdue(utcnow()):
            if await repo.transition(upload, UploadStatus.expired):
                await self._drop_parts(session, parts, upload.id)
                expired += 1
        return expired

    async def sweep_parts(self, session: AsyncSession, parts: PartStore) -> int:
        """Remove parts on disk whose upload is over or gone (a stop between a commit and the removal, a deleted
        project): only a pending upload's parts stay."""
        on_disk = parts.upload_ids()
        if not on_disk:
            return 0
        keep = await UploadRepository(session).pending_among(on_disk)
        stale = [upload_id for upload_id in on_disk if upload_id not in keep]
        for upload_id in stale:
            parts.remove(upload_id)
        return len(stale)

    @staticmethod
    async def _drop_parts(session: AsyncSession, parts: PartStore, upload_id: str) -> None:
        await UploadRepository(session).delete_parts(upload_id)
        # The bytes go only once the change is committed: a rollback leaves a pending upload with all its parts.
        after_commit(session, lambda: parts.remove(upload_id))


upload_service = UploadService()
