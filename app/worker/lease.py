"""Keeping a claimed row's lease while its work runs, and noticing when it is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

log = logging.getLogger(__name__)


class Lease:
    """Renews a lease every ``interval`` seconds until the work ends or the lease is lost.

    ``renew`` extends the lease in the database and says whether it is still ours. Fencing: when renewing keeps
    failing (the database is unreachable) for as long as the lease lasts, another worker may have claimed the row
    meanwhile, so the lease counts as lost too. ``on_lost`` is called once, then renewing stops.
    """

    def __init__(
        self,
        renew: Callable[[], Awaitable[bool]],
        *,
        duration: timedelta,
        interval: float,
        on_lost: Callable[[], None],
        name: str,
    ) -> None:
        self.renew = renew
        self.duration = duration
        self.interval = interval
        self.on_lost = on_lost
        self.name = name
        self.lost = False
        self._renewed_at = time.monotonic()

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.on_lost()

    async def keep(self) -> None:
        while not self.lost:
            try:
                if await self.renew():
                    self._renewed_at = time.monotonic()
                else:
                    self._lose()
                    return
            except Exception as exc:
                log.warning("renewing the lease of %s failed: %s", self.name, exc)
                if time.monotonic() - self._renewed_at > self.duration.total_seconds() - self.interval:
                    self._lose()
                    return
            await asyncio.sleep(self.interval)


@contextlib.asynccontextmanager
async def kept(lease: Lease) -> AsyncIterator[None]:
    """Keep ``lease`` renewed while the block runs; renewing stops when the block ends, however it ends."""
    keeping = asyncio.create_task(lease.keep())
    try:
        yield
    finally:
        keeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeping
