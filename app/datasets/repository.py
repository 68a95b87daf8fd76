"""All SQL for cached dataset reports."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.models import StoredReport


class ReportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, project_id: str, file_id: str, model: str, max_issues: int) -> StoredReport | None:
        stmt = select(StoredReport).where(
            StoredReport.project_id == project_id,
            StoredReport.file_id == file_id,
            StoredReport.model == model,
            StoredReport.max_issues == max_issues,
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_if_absent(self, report: StoredReport) -> None:
        """Store ``report`` unless a concurrent request stored the same one first (they are identical)."""
        try:
            async with self.session.begin_nested():
                self.session.add(report)
        except IntegrityError:
            pass
