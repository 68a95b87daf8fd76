"""Announcements every replica hears at once: Redis pub/sub on one channel, a topic and a value per message.

A replica announces what it changed (a revoked key, a project's routes); every replica, itself included, runs the
topic's handler, which drops what its caches hold. Delivery is at most once: a replica that was disconnected
while something was announced cannot know what it missed, so on every (re)subscription it runs the
``on_resubscribe`` handlers, which drop everything cached. Announcing never waits on Redis and never fails a
request; while Redis is out of reach other replicas follow changes when their cache entries expire.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from app.shared.client import UNAVAILABLE, Outage

log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[None] | None]

RECONNECT_SECONDS = 0.5


class Broadcast:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.channel = f"{prefix}broadcast"
        self.ready = asyncio.Event()  # subscribed: announcements from now on are heard
        self.outage = Outage("broadcasts")
        self._handlers: dict[str, Handler] = {}
        self._resubscribed: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, topic: str, handler: Handler) -> None:
        """Run ``handler(value)`` for each announcement on ``topic`` (a coroutine is run beside the listener)."""
        self._handlers[topic] = handler

    def on_resubscribe(self, handler: Callable[[], None]) -> None:
        self._resubscribed.append(handler)

    def announce(self, topic: str, value: str) -> None:
        """Publish without waiting: for the synchronous after-commit hooks of the caches."""
        self._spawn(self.publish(topic, value))

    async def publish(self, topic: str, value: str) -> int:
        """Tell every replica; how many listeners heard it (0 when Redis is out of reach)."""
        try:
            heard = int(await self.redis.publish(self.channel, json.dumps([topic, value])))
        except UNAVAILABLE as exc:
            self.outage.failed(exc, "other replicas follow changes when their caches expire")
            return 0
        self.outage.recovered()
        return heard

    async def run_forever(self) -> None:
        """Listen, and subscribe again after Redis went away."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    for forget in self._resubscribed:
                        forget()
                    self.ready.set()
                    self.outage.recovered()
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self._dispatch(message["data"])
            except UNAVAILABLE as exc:
                self.ready.clear()
                self.outage.failed(exc, "caches expire by their TTL until it is back")
                await asyncio.sleep(RECONNECT_SECONDS)

    def _dispatch(self, data: str) -> None:
        try:
            topic, value = json.loads(data)
        except (ValueError, TypeError):
            log.warning("ignored a malformed broadcast: %r", data[:200])
            return
        handler = self._handlers.get(topic)
        if handler is None:
            return
        try:
            result = handler(value)
        except Exception:
            log.exception("the %s handler failed", topic)
            return
        if inspect.isawaitable(result):
            self._spawn(result)

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("broadcast work failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for announcements still being published (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
