"""Nudging this process's embedded worker when work becomes runnable (other workers poll)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import after_commit


class Wakeup:
    """One nudge reaches every loop of a worker: each kind of work waits on its own event, so one loop taking the
    nudge never hides it from another."""

    def __init__(self) -> None:
        self._events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def set(self) -> None:
        for event in self._events.values():
            event.set()

    async def wait(self, name: str, seconds: float) -> None:
        """Until the next nudge or ``seconds``, whichever is first."""
        event = self._events[name]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        event.clear()


def wake_workers(request: Request, session: AsyncSession) -> None:
    """Wake the embedded worker once the transaction has committed (it would find nothing before)."""
    wakeup: Wakeup | None = getattr(request.app.state, "worker_wakeup", None)
    if wakeup is not None:
        after_commit(session, wakeup.set)
