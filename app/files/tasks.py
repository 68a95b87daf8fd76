"""Background upkeep of stored files: expired files leave the database and the disk."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import commit
from app.files.service import file_service
from app.files.storage import BlobStore

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
    """Expired files are already invisible to the API; this reclaims their rows and bytes."""
    while True:
        try:
            await purge_expired_once(sessionmaker, store)
        except Exception:
            log.exception("purging expired files failed; retrying next round")
        await asyncio.sleep(interval_seconds)
