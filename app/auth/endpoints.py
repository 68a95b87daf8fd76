"""/v1/projects and /v1/projects/{project_id}/api_keys: admin-only management of tenants and their keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from app.auth.principal import AdminDep, AuthCache
from app.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyDeleted,
    ApiKeyOut,
    ApiKeyUpdate,
    ProjectCreate,
    ProjectOut,
    RateLimits,
)
from app.auth.service import auth_service
from app.db import SessionDep, after_commit
from app.kit.pagination import AfterQuery, Order, OrderQuery, limit_query
from app.kit.schemas import ListResponse

router = APIRouter(prefix="/v1/projects", tags=["Projects"])

Limit = Annotated[int, limit_query(100)]


@router.post("", response_model=ProjectOut)
async def create_project(body: ProjectCreate, session: SessionDep, _: AdminDep) -> ProjectOut:
    """Create a project: a tenant that owns files, jobs and models."""
    return ProjectOut.model_validate(await auth_service.create_project(session, body.name))


@router.get("", response_model=ListResponse[ProjectOut])
async def list_projects(
    session: SessionDep,
    _: AdminDep,
    limit: Limit = 20,
    order: OrderQuery = Order.asc,
    after: AfterQuery = None,
) -> ListResponse[ProjectOut]:
    """List projects."""
    page = await auth_service.list_projects(session, limit=limit, order=order, after=after)
    data = [ProjectOut.model_validate(p) for p in page.items]
    return ListResponse.of(data, page.has_more)


@router.get("/{project_id}", response_model=ProjectOut)
async def get_project(project_id: str, session: SessionDep, _: AdminDep) -> ProjectOut:
    """Retrieve a project."""
    return ProjectOut.model_validate(await auth_service.get_project(session, project_id))


@router.post("/{project_id}/api_keys", response_model=ApiKeyCreated)
async def create_api_key(project_id: str, body: ApiKeyCreate, session: SessionDep, _: AdminDep) -> ApiKeyCreated:
    """Create an API key in a project. The secret `value` is in this response only."""
    limits = RateLimits.model_validate(body.model_dump())
    key, secret = await auth_service.create_key(session, project_id, name=body.name, role=body.role, limits=limits)
    return ApiKeyCreated.model_validate({**ApiKeyOut.model_validate(key).model_dump(), "value": secret})


@router.get("/{project_id}/api_keys", response_model=ListResponse[ApiKeyOut])
async def list_api_keys(
    project_id: str,
    session: SessionDep,
    _: AdminDep,
    limit: Limit = 20,
    order: OrderQuery = Order.asc,
    after: AfterQuery = None,
) -> ListResponse[ApiKeyOut]:
    """List a project's API keys, revoked ones included (never their secrets)."""
    page = await auth_service.list_keys(session, project_id, limit=limit, order=order, after=after)
    return ListResponse.of([ApiKeyOut.model_validate(k) for k in page.items], page.has_more)


@router.post("/{project_id}/api_keys/{key_id}", response_model=ApiKeyOut)
async def update_api_key(
    project_id: str, key_id: str, body: ApiKeyUpdate, request: Request, session: SessionDep, _: AdminDep
) -> ApiKeyOut:
    """Change a key's rate limits (requests and tokens per minute; null lifts a limit)."""
    key = await auth_service.set_limits(session, project_id, key_id, body)
    cache: AuthCache = request.app.state.auth_cache
    after_commit(session, lambda: cache.evict_key(key.id))
    return ApiKeyOut.model_validate(key)


@router.delete("/{project_id}/api_keys/{key_id}", response_model=ApiKeyDeleted)
async def revoke_api_key(
    project_id: str, key_id: str, request: Request, session: SessionDep, _: AdminDep
) -> ApiKeyDeleted:
    """Revoke an API key: from now on it gets 401."""
    key = await auth_service.revoke_key(session, project_id, key_id)
    cache: AuthCache = request.app.state.auth_cache
    after_commit(session, lambda: cache.evict_key(key.id))
    return ApiKeyDeleted(id=key.id)
