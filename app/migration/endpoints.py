"""/v1/migrations: move fine-tunes off an upstream provider (ftgw's own API; admin keys only: it spends the
provider's credentials and reads everything its organisation holds)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from app.auth.principal import AdminDep
from app.db import SessionDep, after_commit
from app.kit.pagination import AfterQuery, Order, OrderQuery, limit_query
from app.kit.schemas import ListResponse
from app.migration.report import MigrationReport, build_report, markdown
from app.migration.schemas import CreateMigrationRequest, MigrationOut, SwitchRequest, UpstreamInventory
from app.migration.service import migration_service, out
from app.registry.alias_endpoints import GatesDep
from app.worker.wakeup import wake_workers

router = APIRouter(prefix="/v1/migrations", tags=["Migrations"])

Limit = Annotated[int, limit_query(100)]


@router.get("/sources/{provider}", response_model=UpstreamInventory)
async def upstream_inventory(provider: str, request: Request, principal: AdminDep) -> UpstreamInventory:
    """What the upstream provider holds: its fine-tuning jobs, fine-tune files and fine-tuned models."""
    return await migration_service.inventory(request.app.state.providers, provider)


@router.post("", response_model=MigrationOut, status_code=201)
async def create_migration(
    body: CreateMigrationRequest, request: Request, session: SessionDep, principal: AdminDep
) -> MigrationOut:
    """Plan a migration from the upstream's jobs: what will be copied or distilled, trained and aliased, with
    estimates. Nothing moves until it is started (``start: true`` starts it at once)."""
    state = request.app.state
    migration = await migration_service.create(session, state.blob_store, state.providers, principal, body)
    if body.start:
        wake_workers(request, session)
    return out(migration)


@router.get("", response_model=ListResponse[MigrationOut])
async def list_migrations(
    session: SessionDep,
    principal: AdminDep,
    limit: Limit = 20,
    after: AfterQuery = None,
    order: OrderQuery = Order.desc,
) -> ListResponse[MigrationOut]:
    page = await migration_service.page(session, principal.project_id, limit=limit, order=order, after=after)
    return ListResponse[MigrationOut].of([out(m) for m in page.items], page.has_more)


@router.get("/{migration_id}", response_model=MigrationOut)
async def retrieve_migration(migration_id: str, session: SessionDep, principal: AdminDep) -> MigrationOut:
    return out(await migration_service.get(session, principal.project_id, migration_id))


@router.post("/{migration_id}/start", response_model=MigrationOut)
async def start_migration(
    migration_id: str, request: Request, session: SessionDep, principal: AdminDep
) -> MigrationOut:
    """Start a planned migration, or resume a failed one from the step it stopped at."""
    migration = await migration_service.start(session, principal.project_id, migration_id)
    wake_workers(request, session)
    return out(migration)


@router.post("/{migration_id}/resume", response_model=MigrationOut)
async def resume_migration(
    migration_id: str, request: Request, session: SessionDep, principal: AdminDep
) -> MigrationOut:
    """The same as start: a failed migration carries on from its last saved step."""
    return await start_migration(migration_id, request, session, principal)


@router.post("/{migration_id}/cancel", response_model=MigrationOut)
async def cancel_migration(migration_id: str, session: SessionDep, principal: AdminDep) -> MigrationOut:
    """Stop the migration; what moved so far (files, models, aliases) stays."""
    return out(await migration_service.cancel(session, principal.project_id, migration_id))


@router.post("/{migration_id}/switch", response_model=MigrationOut)
async def switch_migration(
    migration_id: str,
    request: Request,
    session: SessionDep,
    principal: AdminDep,
    gates: GatesDep,
    body: SwitchRequest | None = None,
) -> MigrationOut:
    """Promote each kept name to its new model (the upstream model stays its fallback); refused when parity does
    not hold against the migration's max_regression, unless forced."""
    migration = await migration_service.switch(
        session, gates, principal, migration_id, force=body.force if body else False
    )
    catalog = request.app.state.catalog
    project_id = principal.project_id
    after_commit(session, lambda: catalog.invalidate(project_id))
    return out(migration)


@router.get(
    "/{migration_id}/report",
    response_model=MigrationReport,
    responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}}}},
)
async def migration_report(
    migration_id: str,
    session: SessionDep,
    principal: AdminDep,
    format: Annotated[Literal["json", "markdown"], Query(description="JSON, or markdown for people.")] = "json",
) -> Response | MigrationReport:
    """What moved and the parity figures, as they stand (final once the migration has completed)."""
    migration = await migration_service.get(session, principal.project_id, migration_id)
    report = build_report(migration)
    if format == "markdown":
        return PlainTextResponse(markdown(report), media_type="text/markdown; charset=utf-8")
    return report
