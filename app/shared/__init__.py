"""State shared by every API replica and worker through Redis, when ``FTGW_REDIS_URL`` is set.

Shared: each key's rate-limit windows (``limits``); reads of usage, which first make every process write its
unwritten sums (``usage``); revocations and route changes, announced so every process drops its cached copy at
once (``broadcast``). Without Redis each process keeps all of it to itself, as the embedded setup always has.

A process starts a :class:`Shared` (refusing to start when Redis cannot be reached), wires its caches to it with
:meth:`Shared.follow`, and closes it at shutdown.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from app.auth.principal import AuthCache
from app.config import Settings
from app.registry.routing import ModelCatalog
from app.shared.broadcast import Broadcast
from app.shared.client import connect, require
from app.shared.limits import SharedRateLimiter
from app.shared.usage import FLUSH, SharedUsage
from app.usage.service import UsageMeter

KEYS = "keys"  # a key was revoked or its limits changed: the key's id
ROUTES = "routes"  # a project's aliases or fine-tuned models changed: the project's id

SUBSCRIBE_SECONDS = 10.0


class Shared:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.broadcast = Broadcast(redis, prefix)
        self.limiter = SharedRateLimiter(redis, prefix)
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings) -> Shared | None:
        """Connected to ``FTGW_REDIS_URL``; None when it is not set."""
        if settings.redis_url is None:
            return None
        redis = connect(settings)
        try:
            await require(redis, settings.redis_url)
        except BaseException:
            await redis.aclose()
            raise
        return cls(redis, settings.redis_prefix)

    async def follow(self, catalog: ModelCatalog, meter: UsageMeter, auth_cache: AuthCache | None = None) -> None:
        """Announce this process's changes to the others and follow theirs; listening once this returns."""
        catalog.announce = lambda project_id: self.broadcast.announce(ROUTES, project_id)
        self.broadcast.on(ROUTES, catalog.forget)
        self.broadcast.on_resubscribe(catalog.forget_all)
        if auth_cache is not None:
            auth_cache.announce = lambda key_id: self.broadcast.announce(KEYS, key_id)
            self.broadcast.on(KEYS, auth_cache.forget_key)
            self.broadcast.on_resubscribe(auth_cache.forget_all)
        usage = SharedUsage(self.redis, self.broadcast, self.prefix, meter)
        meter.flush_everywhere = usage.flush_everywhere
        self.broadcast.on(FLUSH, usage.flushed)
        self._listener = asyncio.create_task(self.broadcast.run_forever(), name="ftgw-broadcast")
        ready = asyncio.create_task(self.broadcast.ready.wait())
        await asyncio.wait({ready, self._listener}, timeout=SUBSCRIBE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            raise RuntimeError(f"could not subscribe to Redis broadcasts within {SUBSCRIBE_SECONDS:.0f} s")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self.limiter.drain()
        await self.broadcast.drain()
        await self.redis.aclose()
