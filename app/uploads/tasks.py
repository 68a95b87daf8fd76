"""Upkeep of uploads: unfinished ones past their expiry become expired, and parts no pending upload owns go."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import commit
from app.files.storage import BlobStore
from app.uploads.parts import PartStore
from app.uploads.service import upload_service

log = logging.getLogger(__name__)


async def expire_uploads_once(sessionmaker: async_sessionmaker[AsyncSession], store: BlobStore) -> int:
    """One round (the files upkeep loop runs it beside the purge of expired files); how many uploads expired."""
    parts = PartStore(store)
    async with sessionmaker() as session:
        expired = await upload_service.expire_overdue(session, parts)
        await commit(session)
        swept = await upload_service.sweep_parts(session, parts)
    if expired or swept:
        log.info("expired %d uploads, removed the parts of %d finished ones", expired, swept)
    return expired
