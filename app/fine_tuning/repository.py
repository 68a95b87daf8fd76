"""All SQL for jobs, events and checkpoints: the API's project-scoped reads and writes, and the workers' leases."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.fine_tuning.models import (
    EventLevel,
    EventType,
    FineTuningJob,
    JobCheckpoint,
    JobEvent,
    JobStatus,
)
from app.kit.ids import new_id
from app.kit.pagination import Order, Page
from app.kit.repository import compare_and_set, keyset_page
from app.kit.time import utcnow


class JobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- the API's view: always within one project -------------------------------------------------------------

    async def get(self, project_id: str, job_id: str, *, for_update: bool = False) -> FineTuningJob | None:
        stmt = select(FineTuningJob).where(FineTuningJob.project_id == project_id, FineTuningJob.id == job_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def tokens_per_second(self, provider: str, base_model: str, *, last: int = 20) -> float | None:
        """Trained tokens per second of the ``last`` jobs that succeeded on ``provider``'s ``base_model`` (any
        project: a figure of the machine, not of anyone's data); None without one."""
        stmt = (
            select(FineTuningJob.trained_tokens, FineTuningJob.started_at, FineTuningJob.finished_at)
            .where(
                FineTuningJob.provider == provider,
                FineTuningJob.base_model == base_model,
                FineTuningJob.status == JobStatus.succeeded,
                FineTuningJob.trained_tokens.is_not(None),
                FineTuningJob.started_at.is_not(None),
                FineTuningJob.finished_at.is_not(None),
            )
            .order_by(FineTuningJob.finished_at.desc())
            .limit(last)
        )
        tokens = seconds = 0.0
        for trained, started, finished in (await self.session.execute(stmt)).all():
            if trained is not None and started is not None and finished is not None:
                tokens += trained
                seconds += max(0.0, (finished - started).total_seconds())
        return tokens / seconds if tokens and seconds else None

    async def add(self, job: FineTuningJob) -> FineTuningJob:
        self.session.add(job)
        await self.session.flush()
        return job

    async def page(
        self,
        project_id: str,
        *,
        metadata: dict[str, str],
        limit: int,
        after: str | None,
        status: JobStatus | None = None,
    ) -> Page[FineTuningJob]:
        stmt = select(FineTuningJob).where(FineTuningJob.project_id == project_id)
        for key, value in metadata.items():
            stmt = stmt.where(FineTuningJob.job_metadata[key].as_string() == value)
        if status is not None:
            stmt = stmt.where(FineTuningJob.status == status)
        return await keyset_page(self.session, stmt, FineTuningJob, limit=limit, order=Order.desc, after=after)

    async def latest_metrics(self, project_id: str, job_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Each job's latest metrics event data (its step and total steps: the job's progress), in one query."""
        if not job_ids:
            return {}
        latest = (
            select(JobEvent.job_id, func.max(JobEvent.seq).label("seq"))
            .where(
                JobEvent.project_id == project_id,
                JobEvent.job_id.in_(list(job_ids)),
                JobEvent.type == EventType.metrics,
            )
            .group_by(JobEvent.job_id)
            .subquery()
        )
        stmt = select(JobEvent.job_id, JobEvent.data).join(
            latest, and_(JobEvent.job_id == latest.c.job_id, JobEvent.seq == latest.c.seq)
        )
        return {job_id: data or {} for job_id, data in (await self.session.execute(stmt)).all()}

    async def transition(
        self,
        job: FineTuningJob,
        to: JobStatus,
        *,
        from_: Collection[JobStatus],
        lease_owner: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> bool:
        """Compare-and-set the job's status (:func:`app.kit.repository.compare_and_set`). Every status change goes
        through here: of racing writers exactly one moves the job, and only its transaction may write what the
        change means (its events, its webhooks)."""
        return await compare_and_set(self.session, job, to, from_=from_, lease_owner=lease_owner, values=values)

    async def append_event(
        self,
        job: FineTuningJob,
        message: str,
        *,
        level: EventLevel = EventLevel.info,
        type_: EventType = EventType.message,
        data: dict[str, Any] | None = None,
    ) -> JobEvent:
        """Add an event with the job's next sequence number.

        The increment takes the job row's write lock until commit, so a job's events commit in sequence order:
        a reader that saw event N never later finds an N-1 it missed (what makes the stream resumable).
        """
        stmt = (
            update(FineTuningJob)
            .where(FineTuningJob.id == job.id)
            .values(event_seq=FineTuningJob.event_seq + 1)
            .returning(FineTuningJob.event_seq)
        )
        seq = (await self.session.execute(stmt)).scalar_one()
        event = JobEvent(
            id=new_id("ftevent"),
            project_id=job.project_id,
            job_id=job.id,
            seq=seq,
            level=level,
            type=type_,
            message=message[:4096],
            data=data,
        )
        self.session.add(event)
        await self.session.flush()
        return event

    async def events_page(self, project_id: str, job_id: str, *, limit: int, after: str | None) -> Page[JobEvent]:
        """Newest first, as OpenAI lists them; ``after`` is an event id."""
        stmt = select(JobEvent).where(JobEvent.project_id == project_id, JobEvent.job_id == job_id)
        if after is not None:
            cursor = (
                await self.session.execute(stmt.with_only_columns(JobEvent.seq).where(JobEvent.id == after))
            ).scalar()
            if cursor is None:
                raise InvalidRequest(f"No event with id '{after}' to continue after.", param="after")
            stmt = stmt.where(JobEvent.seq < cursor)
        rows = list((await self.session.execute(stmt.order_by(JobEvent.seq.desc()).limit(limit + 1))).scalars())
        return Page(items=rows[:limit], has_more=len(rows) > limit)

    async def events_since(self, project_id: str, job_id: str, seq: int, limit: int = 500) -> Sequence[JobEvent]:
        """Oldest first, strictly after sequence number ``seq``: the stream's read."""
        stmt = (
            select(JobEvent)
            .where(JobEvent.project_id == project_id, JobEvent.job_id == job_id, JobEvent.seq > seq)
            .order_by(JobEvent.seq)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def metrics_data(self, project_id: str, job_id: str, *, up_to_seq: int) -> list[tuple[int, str, Any]]:
        """Each metrics event's (seq, id, data) up to sequence number ``up_to_seq``, oldest first: only the columns
        a chart needs, so a long job's thousands of steps read fast."""
        stmt = (
            select(JobEvent.seq, JobEvent.id, JobEvent.data)
            .where(
                JobEvent.project_id == project_id,
                JobEvent.job_id == job_id,
                JobEvent.type == EventType.metrics,
                JobEvent.seq <= up_to_seq,
            )
            .order_by(JobEvent.seq)
        )
        return [(seq, id_, data) for seq, id_, data in (await self.session.execute(stmt)).all()]

    async def latest_messages(self, project_id: str, job_id: str, *, up_to_seq: int, limit: int) -> list[JobEvent]:
        """The job's latest ``limit`` message (not metrics) events up to sequence number ``up_to_seq``, newest first."""
        stmt = (
            select(JobEvent)
            .where(
                JobEvent.project_id == project_id,
                JobEvent.job_id == job_id,
                JobEvent.type == EventType.message,
                JobEvent.seq <= up_to_seq,
            )
            .order_by(JobEvent.seq.desc())
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def event_seq(self, project_id: str, job_id: str, event_id: str) -> int | None:
        stmt = select(JobEvent.seq).where(
            JobEvent.project_id == project_id, JobEvent.job_id == job_id, JobEvent.id == event_id
        )
        return (await self.session.execute(stmt)).scalar()

    async def add_checkpoint(self, checkpoint: JobCheckpoint) -> JobCheckpoint:
        self.session.add(checkpoint)
        await self.session.flush()
        return checkpoint

    async def checkpoint_at(self, job_id: str, step: int) -> JobCheckpoint | None:
        stmt = select(JobCheckpoint).where(JobCheckpoint.job_id == job_id, JobCheckpoint.step_number == step)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def checkpoints_page(
        self, project_id: str, job_id: str, *, limit: int, after: str | None
    ) -> Page[JobCheckpoint]:
        stmt = select(JobCheckpoint).where(JobCheckpoint.project_id == project_id, JobCheckpoint.job_id == job_id)
        return await keyset_page(self.session, stmt, JobCheckpoint, limit=limit, order=Order.desc, after=after)

    # --- the workers' view: leases across projects ----------------------------------------------------------------

    async def validating(self, limit: int = 100) -> Sequence[FineTuningJob]:
        stmt = (
            select(FineTuningJob)
            .where(FineTuningJob.status == JobStatus.validating_files)
            .order_by(FineTuningJob.created_at)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def claim(
        self, worker_id: str, providers: Sequence[str], lease: timedelta, now: datetime | None = None
    ) -> FineTuningJob | None:
        """Atomically take the oldest runnable job: queued, or running under a lease that has expired.

        The candidate is picked with ``FOR UPDATE SKIP LOCKED`` where the database has it (PostgreSQL), so
        workers don't queue on each other's rows; the compare-and-set UPDATE is what guarantees one winner
        everywhere (SQLite serialises writers).
        """
        now = now or utcnow()
        runnable = or_(
            and_(
                FineTuningJob.status == JobStatus.queued,
                or_(FineTuningJob.lease_owner.is_(None), FineTuningJob.lease_expires_at < now),
            ),
            and_(
                FineTuningJob.status == JobStatus.running,
                or_(FineTuningJob.lease_owner.is_(None), FineTuningJob.lease_expires_at < now),
            ),
        )
        candidates = (
            select(FineTuningJob.id)
            .where(runnable, FineTuningJob.provider.in_(list(providers)))
            .order_by(FineTuningJob.created_at)
            .limit(1)
        )
        if self.session.bind is not None and self.session.bind.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        job_id = (await self.session.execute(candidates)).scalar()
        if job_id is None:
            return None
        claimed = await self.session.execute(
            update(FineTuningJob)
            .where(FineTuningJob.id == job_id, runnable)
            .values(
                status=JobStatus.running,
                lease_owner=worker_id,
                lease_expires_at=now + lease,
                attempts=FineTuningJob.attempts + 1,
                started_at=func.coalesce(FineTuningJob.started_at, now),
                requested_action=None,
            )
            .returning(FineTuningJob.id)
        )
        if claimed.scalar() is None:
            return None
        job = await self.session.get(FineTuningJob, job_id, populate_existing=True)
        return job

    async def renew(self, job_id: str, worker_id: str, lease: timedelta) -> JobStatus | None:
        """Extend our lease; the job's status, or None when the lease is no longer ours."""
        result = await self.session.execute(
            update(FineTuningJob)
            .where(FineTuningJob.id == job_id, FineTuningJob.lease_owner == worker_id)
            .values(lease_expires_at=utcnow() + lease)
            .returning(FineTuningJob.status)
        )
        return result.scalar()

    async def held(self, job_id: str, worker_id: str) -> FineTuningJob | None:
        stmt = select(FineTuningJob).where(FineTuningJob.id == job_id, FineTuningJob.lease_owner == worker_id)
        return (await self.session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def release(self, job_id: str, worker_id: str) -> None:
        await self.session.execute(
            update(FineTuningJob)
            .where(FineTuningJob.id == job_id, FineTuningJob.lease_owner == worker_id)
            .values(lease_owner=None, lease_expires_at=None)
        )
