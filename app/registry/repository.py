"""All SQL for fine-tuned models."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.registry.models import FineTunedModel


class ModelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, project_id: str, model_id: str) -> FineTunedModel | None:
        stmt = select(FineTunedModel).where(
            FineTunedModel.project_id == project_id,
            FineTunedModel.id == model_id,
            FineTunedModel.deleted_at.is_(None),
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, model: FineTunedModel) -> FineTunedModel:
        self.session.add(model)
        await self.session.flush()
        return model

    async def list(self, project_id: str) -> Sequence[FineTunedModel]:
        stmt = (
            select(FineTunedModel)
            .where(FineTunedModel.project_id == project_id, FineTunedModel.deleted_at.is_(None))
            .order_by(FineTunedModel.created_at, FineTunedModel.id)
        )
        return (await self.session.execute(stmt)).scalars().all()
