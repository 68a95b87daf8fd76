"""Migrations: plan (reading the upstream), start, resume, cancel, switch; the upstream's inventory.

Planning reads the upstream (its jobs and their files) and nothing moves: the plan is stored with the migration and
shown. Starting queues it for a worker (``app.migration.runner``). The switch promotes each alias to the version
that calls the new model, refusing when parity does not hold (unless forced): a promotion like any other, in the
registry's audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.errors import BadGateway, Conflict, GatewayError, InvalidRequest, NotFound
from app.files.service import file_service
from app.files.storage import BlobStore
from app.fine_tuning.models import ACTIVE as JOB_ACTIVE
from app.fine_tuning.repository import JobRepository
from app.fine_tuning.service import job_service
from app.kit.ids import new_id
from app.kit.pagination import Order, Page
from app.kit.time import utcnow
from app.migration import distil
from app.migration.models import ACTIVE, Migration, MigrationStatus
from app.migration.plan import item_of, totals
from app.migration.repository import MigrationRepository
from app.migration.schemas import (
    CreateMigrationRequest,
    MigrationItem,
    MigrationOut,
    PlanTotals,
    UpstreamInventory,
)
from app.migration.upstream import UpstreamGone, UpstreamRefused, UpstreamSource, UpstreamUnavailable
from app.providers.base import TrainingProvider
from app.providers.registry import ProviderRegistry
from app.providers.upstream import UpstreamProvider
from app.registry.aliases import alias_service
from app.registry.gates import GateRuntime
from app.registry.service import registry_service
from app.tokenizers import tokenizer_for_model


def migration_not_found(migration_id: str) -> NotFound:
    return NotFound(f"No such migration: {migration_id}", param="migration_id", code="migration_not_found")


def _provider(providers: ProviderRegistry, name: str) -> UpstreamProvider:
    provider = providers.get(name)
    if not isinstance(provider, UpstreamProvider):
        upstreams = [p.name for p in providers.all() if isinstance(p, UpstreamProvider)]
        known = ", ".join(upstreams) if upstreams else "none is configured (FTGW_PROVIDERS)"
        raise InvalidRequest(
            f"No upstream provider named '{name}' (upstream providers: {known}).",
            param="provider",
            code="provider_not_configured",
        )
    return provider


def _upstream_error(provider: str, exc: Exception) -> GatewayError:
    return BadGateway(f"The provider {provider} failed: {exc}", code="upstream_error")


class MigrationService:
    async def inventory(self, providers: ProviderRegistry, name: str) -> UpstreamInventory:
        provider = _provider(providers, name)
        try:
            async with UpstreamSource(provider) as source:
                return await source.inventory()
        except (UpstreamUnavailable, UpstreamRefused, UpstreamGone) as exc:
            raise _upstream_error(name, exc) from None

    async def create(
        self,
        session: AsyncSession,
        store: BlobStore,
        providers: ProviderRegistry,
        principal: Principal,
        body: CreateMigrationRequest,
    ) -> Migration:
        """Read the upstream and store the plan (queued when ``start``); nothing is copied yet."""
        provider = _provider(providers, body.provider)
        project_id = principal.project_id
        try:
            trainable = await registry_service.resolve_trainable(session, providers, project_id, body.base_model)
        except NotFound:
            raise InvalidRequest(
                f"'{body.base_model}' is not a model this gateway can fine-tune.",
                param="base_model",
                code="model_not_found",
            ) from None
        prompts, prompt_tokens = await self._prompt_set(session, store, project_id, body)
        items = await self._items(provider, body, trainable.provider)
        tokens_per_second = await JobRepository(session).tokens_per_second(
            trainable.provider.name, trainable.base_model
        )
        plan = totals(
            items,
            body,
            prompts=prompts,
            prompt_tokens=prompt_tokens,
            prices=provider.config.prices,
            tokens_per_second=tokens_per_second,
        )
        migration = Migration(
            id=new_id("mig"),
            project_id=project_id,
            provider=body.provider,
            target_provider=trainable.provider.name,
            base_model=body.base_model,
            status=MigrationStatus.queued if body.start else MigrationStatus.planned,
            options=body.model_dump(mode="json", exclude={"start"}),
            plan=plan.model_dump(mode="json"),
            items=[item.model_dump(mode="json") for item in items],
            created_by=principal.key_id,
        )
        return await MigrationRepository(session).add(migration)

    async def _items(
        self, provider: UpstreamProvider, body: CreateMigrationRequest, target: TrainingProvider
    ) -> list[MigrationItem]:
        try:
            async with UpstreamSource(provider) as source:
                try:
                    jobs = await source.jobs(body.jobs)
                except UpstreamGone:
                    jobs = []
                    for i, job_id in enumerate(body.jobs or []):
                        try:
                            jobs += await source.jobs([job_id])
                        except UpstreamGone:
                            raise InvalidRequest(
                                f"No fine-tuning job {job_id} on {provider.name}.", param=f"jobs[{i}]"
                            ) from None
                items = []
                for job in jobs:
                    training = await source.file(job.training_file)
                    validation = await source.file(job.validation_file) if job.validation_file else None
                    items.append(item_of(job, body, target, training=training, validation=validation))
        except (UpstreamUnavailable, UpstreamRefused) as exc:
            raise _upstream_error(provider.name, exc) from None
        if not items:
            raise InvalidRequest(
                f"{provider.name} has no succeeded fine-tuning job with a fine-tuned model to migrate.", param="jobs"
            )
        return items

    async def _prompt_set(
        self, session: AsyncSession, store: BlobStore, project_id: str, body: CreateMigrationRequest
    ) -> tuple[int, int]:
        """``(prompts, their tokens)`` of the distillation prompt set; (0, 0) without one."""
        if body.distil is None or body.distil.prompts_file is None:
            return 0, 0
        try:
            record = await file_service.get(session, project_id, body.distil.prompts_file)
        except NotFound:
            raise InvalidRequest(
                f"No file {body.distil.prompts_file} in this project.", param="distil.prompts_file"
            ) from None
        try:
            prompts = await asyncio.to_thread(
                distil.read_prompts, store.path(record.storage_key), body.distil.max_prompts
            )
        except distil.NoPrompts as exc:
            raise InvalidRequest(f"{record.id}: {exc}.", param="distil.prompts_file") from None
        texts = [m["content"] for p in prompts for m in p.messages]
        counts = await asyncio.to_thread(tokenizer_for_model(None).count_batch, texts)
        return len(prompts), int(sum(counts))

    async def get(
        self, session: AsyncSession, project_id: str, migration_id: str, *, for_update: bool = False
    ) -> Migration:
        found = await MigrationRepository(session).get(project_id, migration_id, for_update=for_update)
        if found is None:
            raise migration_not_found(migration_id)
        return found

    async def page(
        self, session: AsyncSession, project_id: str, *, limit: int, order: Order, after: str | None
    ) -> Page[Migration]:
        return await MigrationRepository(session).page(project_id, limit=limit, order=order, after=after)

    async def start(self, session: AsyncSession, project_id: str, migration_id: str) -> Migration:
        """Queue a planned migration; or resume a failed one, or one that completed with failed items (not yet
        switched), from each item's last saved step: failed items are tried again."""
        migration = await self.get(session, project_id, migration_id, for_update=True)
        if migration.status in ACTIVE:
            return migration  # already on its way: starting twice changes nothing
        items = _items(migration.items)
        retry = any(item.status == "failed" for item in items) and migration.switched_at is None
        startable = migration.status in (MigrationStatus.planned, MigrationStatus.failed) or (
            migration.status is MigrationStatus.completed and retry
        )
        if not startable:
            raise Conflict(
                f"Migration {migration.id} is {migration.status.value}; only a planned or failed one, or one that "
                "completed with failed items, can be started.",
                param="migration_id",
                code="migration_not_startable",
            )
        for item in items:
            if item.status == "failed":
                item.status, item.error = "pending", None
        migration.items = [item.model_dump(mode="json") for item in items]
        migration.status = MigrationStatus.queued
        migration.error = None
        migration.finished_at = None
        await session.flush()
        return migration

    async def cancel(self, session: AsyncSession, project_id: str, migration_id: str) -> Migration:
        """Stop it where it is; a job it is waiting for is cancelled too. What moved so far stays."""
        migration = await self.get(session, project_id, migration_id, for_update=True)
        if migration.status in (MigrationStatus.completed, MigrationStatus.cancelled):
            raise Conflict(
                f"Migration {migration.id} is {migration.status.value} already.",
                param="migration_id",
                code="migration_ended",
            )
        migration.status = MigrationStatus.cancelled
        migration.finished_at = utcnow()
        for item in _items(migration.items):
            if item.local_job is not None and item.status == "running":
                job = await job_service.get(session, project_id, item.local_job)
                if job.status in JOB_ACTIVE:
                    await job_service.cancel(session, project_id, item.local_job)
        await session.flush()
        return migration

    async def switch(
        self, session: AsyncSession, gates: GateRuntime, principal: Principal, migration_id: str, *, force: bool
    ) -> Migration:
        """Promote every moved alias to the version calling its new model (the upstream model stays its fallback).
        Refused (409 ``parity_not_met``) when a max_regression was set and parity does not hold, unless forced."""
        migration = await self.get(session, principal.project_id, migration_id, for_update=True)
        if migration.status is not MigrationStatus.completed:
            raise Conflict(
                f"Migration {migration.id} is {migration.status.value}: switch once it has completed.",
                param="migration_id",
                code="migration_not_completed",
            )
        items = [i for i in _items(migration.items) if i.status == "completed" and "migrated" in i.alias_versions]
        if not items:
            raise Conflict(
                f"Migration {migration.id} moved no alias to switch.", param="migration_id", code="nothing_to_switch"
            )
        max_regression = (migration.options.get("parity") or {}).get("max_regression")
        failing = [i for i in items if i.parity is None or not i.parity.holds] if max_regression is not None else []
        if failing and not force and max_regression is not None:
            names = ", ".join(f"{i.alias} ({_why_not(i, max_regression)})" for i in failing)
            raise Conflict(
                f"Parity does not hold for {names}: nothing was switched. Switch with force to go ahead.",
                param="force",
                code="parity_not_met",
            )
        for item in items:
            assert item.alias is not None
            await alias_service.promote(session, gates, principal, item.alias, item.alias_versions["migrated"])
        migration.switched_at = utcnow()
        await session.flush()
        return migration


def _why_not(item: MigrationItem, max_regression: float) -> str:
    if item.parity is None or item.parity.status != "completed":
        return "parity not measured"
    return f"more than {max_regression:g} points worse"


def _items(raw: Sequence[dict[str, object]]) -> list[MigrationItem]:
    return [MigrationItem.model_validate(item) for item in raw]


def out(migration: Migration) -> MigrationOut:
    return MigrationOut(
        id=migration.id,
        provider=migration.provider,
        target_provider=migration.target_provider,
        base_model=migration.base_model,
        status=migration.status,
        totals=PlanTotals.model_validate(migration.plan),
        items=_items(migration.items),
        error=migration.error,
        created_at=migration.created_at,
        started_at=migration.started_at,
        finished_at=migration.finished_at,
        switched_at=migration.switched_at,
    )


migration_service = MigrationService()
