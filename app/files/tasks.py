"""Background upkeep of stored files: expired files leave the database and the disk."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import commit
from app.files.service import file_service
from app.files.storage import BlobStore
from app.uploads.tasks import expire_uploads_once

log = logging.getLogger(__name__)


async def purge_expired_once(sessionmaker: async_sessionmaker[AsyncSession], store: BlobStore) -> int:
    async with sessionmaker() as session:
        purged = await file_service.purge_expired(session, store)
        await commit(session)
    if purged:
        log.info("purged %d expired files", purged)
    return purged


async def purge_expired_forever(
    sessionmaker: async_sessionmaker[AsyncSession], store: BlobStore, interval_seconds: float
) -> None:
    """Expired files are already invisible to the API; this reclaims their rows and bytes. Unfinished uploads past
    their expiry are expired here too, their parts removed."""
    while True:
        for upkeep in (purge_expired_once, expire_uploads_once):
            try:
                await upkeep(sessionmaker, store)
            except Exception:
                log.exception("%s failed; retrying next round", upkeep.__name__)
        await asyncio.sleep(interval_seconds)
