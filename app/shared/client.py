"""The Redis client the replicas share, its key names, and how an outage is reported.

One client per process (``redis.asyncio``, a connection pool). Every key and channel starts with
``FTGW_REDIS_PREFIX`` so several gateways (or test runs) can share one Redis without seeing each other's state.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.config import Settings

log = logging.getLogger(__name__)

# What a call to an unreachable or failing Redis raises: the client's own errors, and the socket's.
UNAVAILABLE = (RedisError, OSError)

# A request must never hang on Redis: a call that takes longer than this counts as an outage.
TIMEOUT_SECONDS = 0.5


def connect(settings: Settings) -> Redis:
    """A client for ``FTGW_REDIS_URL`` (no connection is made until the first command)."""
    assert settings.redis_url is not None
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
    )


async def require(redis: Redis, url: str) -> None:
    """Refuse to start without Redis: a replica that silently kept its state to itself would let a key through
    once per replica. Once running, an outage is survived instead (see :class:`Outage`)."""
    try:
        await redis.ping()
    except UNAVAILABLE as exc:
        raise RuntimeError(f"FTGW_REDIS_URL is set but Redis cannot be reached at {url}: {exc}") from exc


class Outage:
    """Logs when shared state becomes unreachable and when it is back, once each rather than per call."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False

    def failed(self, exc: BaseException, fallback: str) -> None:
        if not self.down:
            self.down = True
            log.warning("Redis unavailable for %s (%s: %s); %s", self.what, type(exc).__name__, exc, fallback)

    def recovered(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis reachable again for %s", self.what)
