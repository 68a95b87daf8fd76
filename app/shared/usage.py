"""Usage reads that count every replica's requests, not only those of the replica that answers the read.

Each process keeps its usage sums in memory and writes them every ``FTGW_USAGE_FLUSH_SECONDS`` (requests never
wait on accounting). A read first asks every process to write what it holds: it announces a flush naming a
Redis list, ``PUBLISH`` says how many processes heard it, and each of them pushes to that list once it has
written. The read waits for all of them, at most :data:`WAIT_SECONDS`, then reads the database.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from redis.asyncio import Redis

from app.shared.broadcast import Broadcast
from app.shared.client import TIMEOUT_SECONDS, UNAVAILABLE
from app.usage.service import UsageMeter

log = logging.getLogger(__name__)

FLUSH = "usage.flush"
WAIT_SECONDS = 1.0


class SharedUsage:
    def __init__(self, redis: Redis, broadcast: Broadcast, prefix: str, meter: UsageMeter) -> None:
        self.redis = redis
        self.broadcast = broadcast
        self.prefix = prefix
        self.meter = meter

    async def flush_everywhere(self) -> None:
        """Every replica's unwritten usage written (this one's at least, when Redis is out of reach)."""
        await self.meter.flush()  # ours, whatever becomes of the announcement
        done = f"{self.prefix}usage:flushed:{secrets.token_hex(8)}"
        heard = await self.broadcast.publish(FLUSH, done)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        written = 0
        try:
            while written < heard and (left := deadline - loop.time()) > 0:
                # A blocking pop longer than the socket timeout would be taken for a dead connection.
                if await self.redis.blpop([done], timeout=min(left, TIMEOUT_SECONDS / 2)) is not None:
                    written += 1
        except UNAVAILABLE as exc:
            log.warning("waiting for replicas to write their usage failed (%s); reading what is written", exc)
        if written < heard:
            log.warning("%d of %d processes did not write their usage within %ss", heard - written, heard, WAIT_SECONDS)

    async def flushed(self, done: str) -> None:
        """Another replica reads usage: write ours, then say so on the list it named."""
        try:
            await self.meter.flush()
        except Exception:
            log.exception("writing usage for a read failed; it is kept for the next try")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(done, 1)
            pipe.expire(done, 10)
            await pipe.execute()
