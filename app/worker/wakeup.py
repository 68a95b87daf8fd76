"""Nudging this process's embedded worker when a job becomes runnable (others poll)."""

from __future__ import annotations

import asyncio

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import after_commit


def wake_workers(request: Request, session: AsyncSession) -> None:
    """Wake the embedded worker once the job's transaction has committed (it would find nothing before)."""
    wakeup: asyncio.Event | None = getattr(request.app.state, "worker_wakeup", None)
    if wakeup is not None:
        after_commit(session, wakeup.set)
