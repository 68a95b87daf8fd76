"""/v1/registry: aliases with numbered versions, promote/rollback, and the audit log of every change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.auth.principal import PrincipalDep
from app.db import SessionDep, after_commit
from app.kit.pagination import AfterQuery, Order, OrderQuery, limit_query
from app.kit.schemas import ListResponse
from app.registry.aliases import alias_service
from app.registry.gates import GateRuntime
from app.registry.models import AliasVersion, ModelAlias
from app.registry.routing import ModelCatalog
from app.registry.schemas import (
    AliasCreate,
    AliasDeleted,
    AliasOut,
    AliasVersionCreate,
    AliasVersionOut,
    ChangeOut,
    Promote,
)

router = APIRouter(prefix="/v1/registry", tags=["Registry"])

Limit = Annotated[int, limit_query(100)]


def _catalog(request: Request) -> ModelCatalog:
    catalog: ModelCatalog = request.app.state.catalog
    return catalog


def _gates(request: Request) -> GateRuntime:
    """What a release gate needs of the app; it runs in sessions of its own, beside the request's."""
    state = request.app.state
    return GateRuntime(
        state.sessionmaker,
        state.blob_store,
        state.catalog,
        str(request.base_url),
        wakeup=getattr(state, "worker_wakeup", None),
        watch=getattr(state, "eval_watch", None),
    )


GatesDep = Annotated[GateRuntime, Depends(_gates)]


def _changed(request: Request, session: SessionDep, project_id: str) -> None:
    """Routes of this process follow the change as soon as it is committed."""
    catalog = _catalog(request)
    after_commit(session, lambda: catalog.invalidate(project_id))


def _version_out(alias: str, version: AliasVersion) -> AliasVersionOut:
    return AliasVersionOut.model_validate({**version.__dict__, "alias": alias})


@router.post("/aliases", response_model=AliasOut)
async def create_alias(body: AliasCreate, request: Request, session: SessionDep, principal: PrincipalDep) -> AliasOut:
    """Create an alias: a stable model name for callers. It answers once a version is active."""
    alias = await alias_service.create(session, _catalog(request), principal, body)
    _changed(request, session, principal.project_id)
    return AliasOut.model_validate(alias)


@router.get("/aliases", response_model=ListResponse[AliasOut])
async def list_aliases(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Limit = 20,
    order: OrderQuery = Order.asc,
    after: AfterQuery = None,
) -> ListResponse[AliasOut]:
    """List the project's aliases."""
    page = await alias_service.page(session, principal.project_id, limit=limit, order=order, after=after)
    return ListResponse.of([AliasOut.model_validate(a) for a in page.items], page.has_more)


@router.get("/aliases/{name}", response_model=AliasOut)
async def get_alias(name: str, session: SessionDep, principal: PrincipalDep) -> AliasOut:
    """Retrieve an alias."""
    return AliasOut.model_validate(await alias_service.get(session, principal.project_id, name))


@router.delete("/aliases/{name}", response_model=AliasDeleted)
async def delete_alias(name: str, request: Request, session: SessionDep, principal: PrincipalDep) -> AliasDeleted:
    """Delete an alias and its versions; calls to it are a 404 afterwards. The audit log keeps its history."""
    alias: ModelAlias = await alias_service.delete(session, principal, name)
    _changed(request, session, principal.project_id)
    return AliasDeleted(id=alias.id, name=alias.name)


@router.post("/aliases/{name}/versions", response_model=AliasVersionOut)
async def create_version(
    name: str,
    body: AliasVersionCreate,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    gates: GatesDep,
) -> AliasVersionOut:
    """Add a numbered version (targets, fallbacks, guard, gate); active unless `activate` is false or its gate fails."""
    version = await alias_service.add_version(session, _catalog(request), principal, name, body, gates)
    _changed(request, session, principal.project_id)
    return _version_out(name, version)


@router.get("/aliases/{name}/versions", response_model=ListResponse[AliasVersionOut])
async def list_versions(name: str, session: SessionDep, principal: PrincipalDep) -> ListResponse[AliasVersionOut]:
    """Every version of an alias, oldest first."""
    versions = await alias_service.versions(session, principal.project_id, name)
    return ListResponse.of([_version_out(name, v) for v in versions], False)


@router.get("/aliases/{name}/versions/{version}", response_model=AliasVersionOut)
async def get_version(name: str, version: int, session: SessionDep, principal: PrincipalDep) -> AliasVersionOut:
    """Retrieve one version of an alias."""
    return _version_out(name, await alias_service.version(session, principal.project_id, name, version))


@router.post("/aliases/{name}/promote", response_model=AliasOut)
async def promote(
    name: str, body: Promote, request: Request, session: SessionDep, principal: PrincipalDep, gates: GatesDep
) -> AliasOut:
    """Make a version the active one; a gated version once its release gate passes (409 with the figures otherwise)."""
    alias = await alias_service.promote(session, gates, principal, name, body.version)
    _changed(request, session, principal.project_id)
    return AliasOut.model_validate(alias)


@router.post("/aliases/{name}/rollback", response_model=AliasOut)
async def rollback(name: str, request: Request, session: SessionDep, principal: PrincipalDep) -> AliasOut:
    """Make the previously active version active again (never gated: the way back when a release goes wrong)."""
    alias = await alias_service.rollback(session, principal, name)
    _changed(request, session, principal.project_id)
    return AliasOut.model_validate(alias)


@router.get("/changes", response_model=ListResponse[ChangeOut])
async def list_changes(
    session: SessionDep,
    principal: PrincipalDep,
    alias: Annotated[str | None, Query(description="Only this alias's changes.")] = None,
    limit: Limit = 20,
    order: OrderQuery = Order.desc,
    after: AfterQuery = None,
) -> ListResponse[ChangeOut]:
    """The audit log: who changed which alias, when and how, newest first."""
    page = await alias_service.changes(
        session, principal.project_id, alias=alias, limit=limit, order=order, after=after
    )
    return ListResponse.of([ChangeOut.model_validate(c) for c in page.items], page.has_more)
