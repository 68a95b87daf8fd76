"""Model names: resolving what a caller may train or use, naming what a job produces, listing models."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import auth_service
from app.errors import NotFound
from app.kit.time import utcnow
from app.providers.base import TrainingProvider
from app.providers.registry import ProviderRegistry
from app.registry.models import FineTunedModel, ModelAlias
from app.registry.repository import AliasRepository, ModelRepository

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, max_length: int = 64) -> str:
    """``"Custom model name!"`` → ``"custom-model-name"``: lowercase letters, digits and single dashes."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-")[:max_length].strip("-")


def fine_tuned_name(base_model: str, project_name: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's shape ``ft:<base>:<org>:<suffix>:<id>``, with the project in the organisation's place."""
    return f"ft:{base_model}:{slugify(project_name) or 'project'}:{suffix or ''}:{job_id.removeprefix('ftjob-')}"


@dataclass(frozen=True)
class TrainableModel:
    id: str
    base_model: str
    provider: TrainingProvider
    parent: FineTunedModel | None


def model_not_found(model: str) -> NotFound:
    return NotFound(
        f"The model '{model}' does not exist or you do not have access to it.", param="model", code="model_not_found"
    )


class RegistryService:
    async def resolve_trainable(
        self, session: AsyncSession, providers: ProviderRegistry, project_id: str, model: str
    ) -> TrainableModel:
        """A base model of some provider, or one of the project's fine-tuned models (training continues from it)."""
        if model.startswith("ft:"):
            parent = await ModelRepository(session).get(project_id, model)
            provider = providers.get(parent.provider) if parent else None
            if parent is None or provider is None:
                raise model_not_found(model)
            return TrainableModel(model, parent.base_model, provider, parent)
        found = providers.for_base_model(model)
        if found is None:
            raise model_not_found(model)
        return TrainableModel(model, model, found[0], None)

    async def fine_tuned(self, session: AsyncSession, project_id: str) -> Sequence[FineTunedModel]:
        return await ModelRepository(session).list(project_id)

    async def get_fine_tuned(self, session: AsyncSession, project_id: str, model: str) -> FineTunedModel:
        found = await ModelRepository(session).get(project_id, model)
        if found is None:
            raise model_not_found(model)
        return found

    async def delete_fine_tuned(self, session: AsyncSession, project_id: str, model: str) -> FineTunedModel:
        """Retire a fine-tuned model: it leaves /v1/models and stops answering (its files stay for the record)."""
        found = await self.get_fine_tuned(session, project_id, model)
        found.deleted_at = utcnow()
        await session.flush()
        return found

    async def aliases(self, session: AsyncSession, project_id: str) -> Sequence[ModelAlias]:
        return await AliasRepository(session).list(project_id)

    async def alias(self, session: AsyncSession, project_id: str, name: str) -> ModelAlias:
        """An alias with an active version, as /v1/models shows it; otherwise the model's 404."""
        found = await AliasRepository(session).get(project_id, name)
        if found is None or found.active_version is None:
            raise model_not_found(name)
        return found

    async def project_name(self, session: AsyncSession, project_id: str) -> str:
        return (await auth_service.get_project(session, project_id)).name


registry_service = RegistryService()
