"""/v1/models: every provider's base models, the project's fine-tuned models (checkpoints included) and aliases."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.auth.principal import PrincipalDep
from app.db import SessionDep, after_commit
from app.errors import InvalidRequest
from app.inference.gateway import InferenceGateway
from app.kit.time import unix
from app.providers.registry import ProviderRegistry
from app.registry.routing import ModelCatalog
from app.registry.schemas import ModelDeleted, ModelList, ModelOut
from app.registry.service import registry_service

router = APIRouter(prefix="/v1/models", tags=["Models"])


def _base_models(request: Request) -> list[ModelOut]:
    providers: ProviderRegistry = request.app.state.providers
    started = request.app.state.started_at
    return [ModelOut(id=m.id, created=started, owned_by=m.owned_by) for m in providers.base_models()]


@router.get("", response_model=ModelList)
async def list_models(request: Request, session: SessionDep, principal: PrincipalDep) -> ModelList:
    """Models this project may use: base models, its fine-tuned models and checkpoints, then its active aliases."""
    tuned = await registry_service.fine_tuned(session, principal.project_id)
    owned = [ModelOut(id=m.id, created=unix(m.created_at), owned_by=principal.project_id) for m in tuned]
    aliases = [
        ModelOut(id=a.name, created=unix(a.created_at), owned_by=principal.project_id)
        for a in await registry_service.aliases(session, principal.project_id)
        if a.active_version is not None
    ]
    return ModelList(data=_base_models(request) + owned + aliases)


@router.get("/{model:path}", response_model=ModelOut)
async def retrieve_model(model: str, request: Request, session: SessionDep, principal: PrincipalDep) -> ModelOut:
    """Retrieve a model."""
    for base in _base_models(request):
        if base.id == model:
            return base
    if not model.startswith("ft:"):
        alias = await registry_service.alias(session, principal.project_id, model)
        return ModelOut(id=alias.name, created=unix(alias.created_at), owned_by=principal.project_id)
    tuned = await registry_service.get_fine_tuned(session, principal.project_id, model)
    return ModelOut(id=tuned.id, created=unix(tuned.created_at), owned_by=principal.project_id)


@router.delete("/{model:path}", response_model=ModelDeleted)
async def delete_model(model: str, request: Request, session: SessionDep, principal: PrincipalDep) -> ModelDeleted:
    """Delete one of the project's fine-tuned models (or checkpoints); afterwards it is a 404 everywhere."""
    if any(base.id == model for base in _base_models(request)):
        raise InvalidRequest(f"'{model}' is a base model; only fine-tuned models can be deleted.", param="model")
    deleted = await registry_service.delete_fine_tuned(session, principal.project_id, model)
    catalog: ModelCatalog = request.app.state.catalog
    gateway: InferenceGateway = request.app.state.inference
    after_commit(session, lambda: catalog.invalidate(principal.project_id))
    after_commit(session, lambda: gateway.forget(deleted.provider, deleted.base_model, deleted.artifact, deleted.id))
    return ModelDeleted(id=deleted.id)
