"""The SQL behind the scrape-time gauges: leased work by status across all projects, in one statement."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, and_, case, func, literal_column, select, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.evals.models import EvalRun
from app.fine_tuning.models import FineTuningJob
from app.kit.time import utcnow
from app.observability.metrics import WorkCount


class WorkRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_status(self, now: datetime | None = None) -> list[WorkCount]:
        """Jobs and eval runs per status, each with how many hold an unexpired lease: one grouped query per table,
        sent as one statement (a UNION ALL), so a scrape costs one round trip however many projects there are."""
        now = now or utcnow()
        parts = []
        for kind, table in (("fine_tuning_job", FineTuningJob), ("eval_run", EvalRun)):
            held = and_(table.lease_owner.is_not(None), table.lease_expires_at >= now)
            parts.append(
                select(
                    literal_column(f"'{kind}'", String).label("kind"),
                    # As text: the two tables' status enums differ, and one UNION column has one type.
                    type_coerce(table.status, String).label("status"),
                    func.count().label("count"),
                    func.coalesce(func.sum(case((held, 1), else_=0)), 0).label("leased"),
                ).group_by(table.status)
            )
        rows = await self.session.execute(union_all(*parts))
        return [WorkCount(str(kind), str(status), int(n), int(held)) for kind, status, n, held in rows]
