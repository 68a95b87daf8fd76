"""Rate limits every replica counts into: the sliding window of ``app.usage.limits``, kept in Redis.

Each key has two small hashes (its request window and its token window: ``start``, ``current``, ``previous``),
updated by one Lua script per request, so a check and its count are atomic across replicas, and timed by Redis's
clock, so replicas whose clocks differ still agree on the window. Tokens are added after a request finishes,
without the request waiting for it.

If Redis cannot be reached mid-run, requests are never refused for it: each replica falls back to its own
in-process window (limits then hold per process, as without Redis) and logs a warning once per outage.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from app.auth.principal import Principal
from app.shared.client import UNAVAILABLE, Outage
from app.usage.limits import WINDOW, Limiter, RateLimiter, Window, limited

# Shared by both scripts: read a window and roll it forward to now, exactly as Window.roll does.
_WINDOWS = """
local W = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function num(x) return string.format('%.17g', x) end
local function load(key)
  local v = redis.call('HMGET', key, 'start', 'current', 'previous')
  local start, current, previous = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if start == nil then return now, 0, 0 end
  local elapsed = now - start
  if elapsed >= W then
    if elapsed < 2 * W then previous = current else previous = 0 end
    current = 0
    start = start + W * math.floor(elapsed / W)
  end
  return start, current, previous
end
local function save(key, start, current, previous)
  redis.call('HSET', key, 'start', num(start), 'current', num(current), 'previous', num(previous))
  -- Two idle windows forget everything anyway.
  redis.call('EXPIRE', key, 2 * W)
end
local function used(start, current, previous) return current + previous * (1 - (now - start) / W) end
"""

# KEYS: the request window, the token window. ARGV: window seconds, requests and tokens per minute (-1: none).
# Returns {"ok"} or {kind, start, current, previous, now} of the window that refused, for Retry-After.
_CHECK = (
    _WINDOWS
    + """
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
if tpm >= 0 then
  local s, c, p = load(KEYS[2])
  save(KEYS[2], s, c, p)
  if used(s, c, p) >= tpm then return {'tokens', num(s), num(c), num(p), num(now)} end
end
if rpm >= 0 then
  local s, c, p = load(KEYS[1])
  if used(s, c, p) + 1 > rpm then
    save(KEYS[1], s, c, p)
    return {'requests', num(s), num(c), num(p), num(now)}
  end
  save(KEYS[1], s, c + 1, p)
end
return {'ok'}
"""
)

# KEYS: the token window. ARGV: window seconds, tokens spent.
_SPEND = (
    _WINDOWS
    + """
local s, c, p = load(KEYS[1])
save(KEYS[1], s, c + tonumber(ARGV[2]), p)
return 1
"""
)


class SharedRateLimiter(Limiter):
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.prefix = prefix
        self._check = redis.register_script(_CHECK)
        self._spend = redis.register_script(_SPEND)
        self.local = RateLimiter()  # while Redis is out of reach
        self.outage = Outage("rate limits")
        self._spending: set[asyncio.Task[None]] = set()

    def _keys(self, key_id: str) -> list[str]:
        return [f"{self.prefix}limits:requests:{key_id}", f"{self.prefix}limits:tokens:{key_id}"]

    async def check(self, principal: Principal) -> None:
        rpm, tpm = principal.max_requests_per_minute, principal.max_tokens_per_minute
        if rpm is None and tpm is None:
            return
        try:
            reply = await self._check(
                keys=self._keys(principal.key_id),
                args=[WINDOW, -1 if rpm is None else rpm, -1 if tpm is None else tpm],
            )
        except UNAVAILABLE as exc:
            self.outage.failed(exc, "each replica limits keys on its own until it is back")
            self.local.admit(principal)
            return
        self.outage.recovered()
        if reply[0] == "ok":
            return
        kind, start, current, previous, now = reply
        limit = rpm if kind == "requests" else tpm
        assert limit is not None
        window = Window(float(start), float(current), float(previous))
        raise limited(kind, limit, window.wait(float(now), limit - 1))

    def spend(self, principal: Principal, tokens: int) -> None:
        if principal.max_tokens_per_minute is None or tokens <= 0:
            return
        # The answer is already made: its caller need not wait for the count.
        task = asyncio.get_running_loop().create_task(self._add(principal, tokens))
        self._spending.add(task)
        task.add_done_callback(self._spending.discard)

    async def _add(self, principal: Principal, tokens: int) -> None:
        try:
            await self._spend(keys=self._keys(principal.key_id)[1:], args=[WINDOW, tokens])
        except UNAVAILABLE as exc:
            self.outage.failed(exc, "each replica limits keys on its own until it is back")
            self.local.spend(principal, tokens)

    async def drain(self) -> None:
        """Wait for the token counts still on their way (at shutdown)."""
        if self._spending:
            await asyncio.gather(*self._spending, return_exceptions=True)
