"""All SQL for usage buckets: additive upserts and range reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.usage.models import UsageBucket


class UsageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add counts to their (project, key, model, minute) rows, creating the rows that are missing."""
        if not rows:
            return
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(UsageBucket)
        stmt = stmt.on_conflict_do_update(
            index_elements=["project_id", "api_key_id", "model", "start_time"],
            set_={
                "requests": UsageBucket.requests + stmt.excluded.requests,
                "prompt_tokens": UsageBucket.prompt_tokens + stmt.excluded.prompt_tokens,
                "completion_tokens": UsageBucket.completion_tokens + stmt.excluded.completion_tokens,
            },
        )
        for row in rows:  # one statement per row: both dialects upsert a row at a time reliably
            await self.session.execute(stmt, row)

    async def between(self, project_id: str, start: datetime, end: datetime) -> Sequence[UsageBucket]:
        stmt = (
            select(UsageBucket)
            .where(
                UsageBucket.project_id == project_id,
                UsageBucket.start_time >= start,
                UsageBucket.start_time < end,
            )
            .order_by(UsageBucket.start_time)
        )
        return (await self.session.execute(stmt)).scalars().all()
