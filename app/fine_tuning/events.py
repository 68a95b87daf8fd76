"""What happens, besides the job row, when a job reaches a final status."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.fine_tuning.models import FineTuningJob
from app.webhooks.service import webhook_service

# Key of the webhook dispatcher's wake-up event in ``session.info`` (set through the app's sessionmaker).
DISPATCH_WAKEUP = "ftgw.dispatch_wakeup"


async def job_finished(session: AsyncSession, job: FineTuningJob) -> None:
    """Queue the job's webhooks in the same transaction as its final status: both land, or neither."""
    await webhook_service.enqueue_job_outcome(session, job, session.info.get(DISPATCH_WAKEUP))
