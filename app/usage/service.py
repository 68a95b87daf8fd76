"""Counting usage off the hot path: requests add to in-memory sums that a background task writes every few seconds.

A request never waits on the database for accounting. The sums are keyed by (project, key, model, minute) and
written with additive upserts, so several gateway processes can write the same rows. Reading usage first writes
what this process still holds, so a caller sees its own requests at once; with ``FTGW_REDIS_URL`` set, what every
process holds (``app.shared.usage``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.db import commit
from app.kit.time import from_unix
from app.usage.repository import UsageRepository
from app.usage.schemas import UsageBucketOut, UsagePage, UsageResult

log = logging.getLogger(__name__)

GroupBy = Literal["model", "api_key_id"]
BUCKETS = {"1m": 60, "1h": 3600, "1d": 86400}

Key = tuple[str, str, str, int]  # project, key, model, minute (Unix seconds)


class UsageMeter:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._pending: defaultdict[Key, list[int]] = defaultdict(lambda: [0, 0, 0])
        self._lock = asyncio.Lock()
        # What a read writes first: this process's sums, or with Redis every replica's (app/shared/usage.py).
        self.flush_everywhere: Callable[[], Awaitable[None]] = self.flush

    def record(self, principal: Principal, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        minute = int(time.time()) // 60 * 60
        sums = self._pending[(principal.project_id, principal.key_id, model, minute)]
        sums[0] += 1
        sums[1] += prompt_tokens
        sums[2] += completion_tokens

    async def flush(self) -> None:
        async with self._lock:
            pending, self._pending = self._pending, defaultdict(lambda: [0, 0, 0])
            if not pending:
                return
            rows = [
                {
                    "project_id": project,
                    "api_key_id": key,
                    "model": model,
                    "start_time": from_unix(minute),
                    "requests": sums[0],
                    "prompt_tokens": sums[1],
                    "completion_tokens": sums[2],
                }
                for (project, key, model, minute), sums in pending.items()
            ]
            try:
                async with self.sessionmaker() as session:
                    await UsageRepository(session).add(rows)
                    await commit(session)
            except Exception:
                # Keep the counts for the next try rather than lose them.
                for (project, key, model, minute), sums in pending.items():
                    kept = self._pending[(project, key, model, minute)]
                    for i in range(3):
                        kept[i] += sums[i]
                raise

    async def run_forever(self, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.flush()
                except Exception:
                    log.exception("writing usage failed; retrying in %ss", interval)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())

    async def read(
        self,
        session: AsyncSession,
        project_id: str,
        *,
        start: datetime,
        end: datetime,
        bucket_width: str,
        group_by: list[GroupBy],
    ) -> UsagePage:
        await self.flush_everywhere()
        width = BUCKETS[bucket_width]
        first = int(start.timestamp()) // width * width  # buckets are aligned to their width, as OpenAI's are
        sums: dict[int, dict[tuple[str | None, str | None], list[int]]] = defaultdict(dict)
        for row in await UsageRepository(session).between(project_id, from_unix(first), end):
            bucket = int(row.start_time.timestamp()) // width * width
            group = (
                row.model if "model" in group_by else None,
                row.api_key_id if "api_key_id" in group_by else None,
            )
            total = sums[bucket].setdefault(group, [0, 0, 0])
            total[0] += row.requests
            total[1] += row.prompt_tokens
            total[2] += row.completion_tokens
        data = []
        for bucket in range(first, int(end.timestamp()), width):
            results = [
                UsageResult(
                    num_model_requests=t[0],
                    input_tokens=t[1],
                    output_tokens=t[2],
                    project_id=project_id,
                    model=model,
                    api_key_id=key,
                )
                for (model, key), t in sorted(sums.get(bucket, {}).items(), key=lambda kv: str(kv[0]))
            ]
            data.append(UsageBucketOut(start_time=bucket, end_time=bucket + width, results=results))
        return UsagePage(data=data)
