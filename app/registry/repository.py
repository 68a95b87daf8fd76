"""All SQL for fine-tuned models, aliases, their versions and the registry's audit log."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.numbers import INT32_MAX
from app.kit.pagination import Order, Page
from app.kit.repository import keyset_page
from app.registry.models import AliasVersion, FineTunedModel, ModelAlias, RegistryChange


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


class AliasRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, project_id: str, name: str, *, for_update: bool = False) -> ModelAlias | None:
        stmt = select(ModelAlias).where(ModelAlias.project_id == project_id, ModelAlias.name == name)
        if for_update:
            # A locked read is a fresh one: the row as committed now, not as this session loaded it earlier.
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, alias: ModelAlias) -> ModelAlias:
        self.session.add(alias)
        await self.session.flush()
        return alias

    async def delete(self, alias: ModelAlias) -> None:
        await self.session.delete(alias)
        await self.session.flush()

    async def page(self, project_id: str, *, limit: int, order: Order, after: str | None) -> Page[ModelAlias]:
        stmt = select(ModelAlias).where(ModelAlias.project_id == project_id)
        return await keyset_page(self.session, stmt, ModelAlias, limit=limit, order=order, after=after)

    async def list(self, project_id: str) -> Sequence[ModelAlias]:
        stmt = select(ModelAlias).where(ModelAlias.project_id == project_id).order_by(ModelAlias.name)
        return (await self.session.execute(stmt)).scalars().all()

    async def version(self, alias_id: str, version: int) -> AliasVersion | None:
        if not 1 <= version <= INT32_MAX:
            return None  # past the column's range no version can exist (and the database would refuse the query)
        stmt = select(AliasVersion).where(AliasVersion.alias_id == alias_id, AliasVersion.version == version)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def versions(self, alias_id: str) -> Sequence[AliasVersion]:
        stmt = select(AliasVersion).where(AliasVersion.alias_id == alias_id).order_by(AliasVersion.version)
        return (await self.session.execute(stmt)).scalars().all()

    async def active_versions(self, project_id: str, alias_ids: Collection[str]) -> dict[str, AliasVersion]:
        """The active version of each of these aliases, by alias id, in one query (a page of aliases, not one each)."""
        if not alias_ids:
            return {}
        stmt = (
            select(AliasVersion)
            .join(ModelAlias, ModelAlias.id == AliasVersion.alias_id)
            .where(
                ModelAlias.project_id == project_id,
                ModelAlias.id.in_(alias_ids),
                AliasVersion.version == ModelAlias.active_version,
            )
        )
        return {v.alias_id: v for v in (await self.session.execute(stmt)).scalars()}

    async def last_version(self, alias_id: str) -> int:
        stmt = select(func.max(AliasVersion.version)).where(AliasVersion.alias_id == alias_id)
        return (await self.session.execute(stmt)).scalar_one_or_none() or 0

    async def add_version(self, version: AliasVersion) -> AliasVersion:
        self.session.add(version)
        await self.session.flush()
        return version

    async def record(self, change: RegistryChange) -> None:
        self.session.add(change)
        await self.session.flush()

    async def changes(
        self,
        project_id: str,
        *,
        alias: str | None,
        limit: int,
        order: Order,
        after: str | None,
        actions: Collection[str] | None = None,
    ) -> Page[RegistryChange]:
        stmt = select(RegistryChange).where(RegistryChange.project_id == project_id)
        if alias is not None:
            stmt = stmt.where(RegistryChange.alias == alias)
        if actions is not None:
            stmt = stmt.where(RegistryChange.action.in_(actions))
        return await keyset_page(self.session, stmt, RegistryChange, limit=limit, order=order, after=after)
