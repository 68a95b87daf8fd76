"""/v1/models: the base models of every provider and the project's fine-tuned models (checkpoints included)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.auth.principal import PrincipalDep
from app.db import SessionDep
from app.errors import InvalidRequest
from app.kit.time import unix
from app.providers.registry import ProviderRegistry
from app.registry.schemas import ModelDeleted, ModelList, ModelOut
from app.registry.service import registry_service

router = APIRouter(prefix="/v1/models", tags=["Models"])


def _base_models(request: Request) -> list[ModelOut]:
    providers: ProviderRegistry = request.app.state.providers
    started = request.app.state.started_at
    return [ModelOut(id=m.id, created=started, owned_by=m.owned_by) for m in providers.base_models()]


@router.get("", response_model=ModelList)
async def list_models(request: Request, session: SessionDep, principal: PrincipalDep) -> ModelList:
    """Models this project may use: base models, then its fine-tuned models and checkpoints."""
    tuned = await registry_service.fine_tuned(session, principal.project_id)
    owned = [ModelOut(id=m.id, created=unix(m.created_at), owned_by=principal.project_id) for m in tuned]
    return ModelList(data=_base_models(request) + owned)


@router.get("/{model:path}", response_model=ModelOut)
async def retrieve_model(model: str, request: Request, session: SessionDep, principal: PrincipalDep) -> ModelOut:
    """Retrieve a model."""
    for base in _base_models(request):
        if base.id == model:
            return base
    tuned = await registry_service.get_fine_tuned(session, principal.project_id, model)
    return ModelOut(id=tuned.id, created=unix(tuned.created_at), owned_by=principal.project_id)


@router.delete("/{model:path}", response_model=ModelDeleted)
async def delete_model(model: str, request: Request, session: SessionDep, principal: PrincipalDep) -> ModelDeleted:
    """Delete one of the project's fine-tuned models (or checkpoints); afterwards it is a 404 everywhere."""
    if any(base.id == model for base in _base_models(request)):
        raise InvalidRequest(f"'{model}' is a base model; only fine-tuned models can be deleted.", param="model")
    deleted = await registry_service.delete_fine_tuned(session, principal.project_id, model)
    return ModelDeleted(id=deleted.id)
