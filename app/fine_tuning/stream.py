"""The live event stream of a job (the seed's ``fine_tunes.follow``), resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import ServerSentEvent

from app.fine_tuning.models import TERMINAL
from app.fine_tuning.repository import JobRepository
from app.fine_tuning.schemas import EventOut

POLL_SECONDS = 0.25


async def follow(
    sessionmaker: async_sessionmaker[AsyncSession], project_id: str, job_id: str, after_seq: int
) -> AsyncIterator[ServerSentEvent]:
    """Every event after ``after_seq``, oldest first, as it is written; ends with ``[DONE]`` once the job has."""
    seq = after_seq
    while True:
        async with sessionmaker() as session:
            repo = JobRepository(session)
            # The job first: if it is over, every event written with its last status is already visible below.
            job = await repo.get(project_id, job_id)
            events = await repo.events_since(project_id, job_id, seq)
        for event in events:
            seq = event.seq
            yield ServerSentEvent(data=EventOut.model_validate(event).model_dump_json(), id=event.id)
        if job is None or (job.status in TERMINAL and not events):
            yield ServerSentEvent(data="[DONE]")
            return
        if not events:
            await asyncio.sleep(POLL_SECONDS)
