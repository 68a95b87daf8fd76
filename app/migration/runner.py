"""Migrations as leased background work: the worker's loop for migrations (see ``app.worker``).

A worker claims a queued migration (or one whose worker died: its lease expired), keeps its lease, and walks each
item through its steps (``app.migration`` lists them). Every step ends by saving the item, so a migration that
stops (the upstream stopped answering, the worker was stopped, the lease was lost) resumes at the step it was on:
files already copied are not copied again, prompts already answered are not asked again, a job already created is
waited for, not created twice.

An upstream that does not answer even after the SDK's retries fails the migration (resumable: ``POST …/resume``);
a problem of one item (a file that fails validation, a job that fails) fails that item only, and the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.auth.principal import Principal
from app.config import Settings
from app.datasets.prompt_format import PromptFormat
from app.datasets.validation import UploadValidator
from app.db import commit
from app.errors import GatewayError, NotFound
from app.evals import comparisons
from app.evals import validation as validation_evals
from app.evals.schemas import CreateEvalRequest
from app.evals.service import eval_service
from app.files.models import FilePurpose, FileStatus, StoredFile
from app.files.service import file_service
from app.files.storage import BlobStore, digest
from app.fine_tuning.models import TERMINAL, JobStatus
from app.fine_tuning.schemas import CreateJobRequest
from app.fine_tuning.service import job_service
from app.kit.time import utcnow
from app.migration import distil
from app.migration.models import Migration, MigrationStatus
from app.migration.plan import imported_model_id
from app.migration.repository import MigrationRepository
from app.migration.schemas import (
    CreateMigrationRequest,
    CriterionParity,
    Distillation,
    FileCopy,
    MigrationItem,
    Parity,
)
from app.migration.upstream import (
    UpstreamBatches,
    UpstreamGone,
    UpstreamRefused,
    UpstreamSource,
    UpstreamUnavailable,
)
from app.providers.registry import ProviderRegistry
from app.providers.upstream import UpstreamProvider
from app.registry.aliases import alias_service
from app.registry.gates import GateRuntime
from app.registry.models import FineTunedModel
from app.registry.repository import AliasRepository, ModelRepository
from app.registry.routing import ModelCatalog
from app.registry.schemas import AliasCreate, AliasVersionCreate, Target
from app.worker.lease import Lease, kept
from app.worker.wakeup import Wakeup

log = logging.getLogger(__name__)

MIGRATION_KEY = "ftgw_migration"  # in the metadata of the jobs and evals a migration makes
EXAMPLES = 5  # disagreeing rows kept in the report, per item


class Stopped(Exception):
    """The lease is gone, the migration was cancelled, or this worker stops: leave it where it is."""


class ItemFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class MigrationRuntime:
    """What running a migration needs of the process it runs in."""

    sessionmaker: async_sessionmaker[AsyncSession]
    store: BlobStore
    providers: ProviderRegistry
    catalog: ModelCatalog
    validator: UploadValidator
    wakeup: Wakeup
    data_dir: Path
    api_base: str
    poll_seconds: float


class MigrationTask:
    name = "migrations"

    def __init__(self, runtime: MigrationRuntime, *, lease_seconds: float, heartbeat_seconds: float) -> None:
        self.runtime = runtime
        self.lease = timedelta(seconds=lease_seconds)
        self.heartbeat_seconds = heartbeat_seconds

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: BlobStore,
        providers: ProviderRegistry,
        catalog: ModelCatalog,
        validator: UploadValidator,
        wakeup: Wakeup,
    ) -> MigrationTask:
        runtime = MigrationRuntime(
            sessionmaker=sessionmaker,
            store=store,
            providers=providers,
            catalog=catalog,
            validator=validator,
            wakeup=wakeup,
            data_dir=settings.data_dir,
            # The eval runs' report_url: a worker has no request to read the gateway's address from.
            api_base=f"http://{settings.host}:{settings.port}/",
            poll_seconds=settings.worker_poll_seconds,
        )
        return cls(
            runtime, lease_seconds=settings.worker_lease_seconds, heartbeat_seconds=settings.worker_heartbeat_seconds
        )

    async def run_next(self, worker_id: str) -> bool:
        async with self.runtime.sessionmaker() as session:
            migration = await MigrationRepository(session).claim(worker_id, self.lease)
            await commit(session)
        if migration is None:
            return False
        execution = _Execution(self.runtime, migration, worker_id, self.lease)
        lease = Lease(
            execution.renew,
            duration=self.lease,
            interval=self.heartbeat_seconds,
            on_lost=execution.stop,
            name=migration.id,
        )
        try:
            async with kept(lease):
                await execution.run()
        finally:
            await asyncio.shield(execution.release())
        return True


class _Execution:
    """One worker's run of one migration."""

    def __init__(self, runtime: MigrationRuntime, migration: Migration, worker_id: str, lease: timedelta) -> None:
        self.rt = runtime
        self.lease = lease
        self.id = migration.id
        self.project_id = migration.project_id
        self.worker_id = worker_id
        self.body = CreateMigrationRequest.model_validate(migration.options)
        self.items = [MigrationItem.model_validate(item) for item in migration.items]
        self.principal = Principal(
            project_id=migration.project_id, key_id=migration.created_by or migration.id, role=Role.admin
        )
        self.work_dir = runtime.data_dir / "migrations" / migration.id
        self.started = migration.started_at is not None
        self.stopped = False

    # --- the lease -------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopped = True

    async def renew(self) -> bool:
        async with self.rt.sessionmaker() as session:
            status = await MigrationRepository(session).renew(self.id, self.worker_id, self.lease)
            await commit(session)
        if status is not MigrationStatus.running:
            self.stopped = True
        return status is not None

    async def release(self) -> None:
        async with self.rt.sessionmaker() as session:
            await MigrationRepository(session).release(self.id, self.worker_id)
            await commit(session)

    def check(self) -> None:
        if self.stopped:
            raise Stopped

    # --- saving ----------------------------------------------------------------------------------------------------

    async def save(self, **fields: Any) -> None:
        """The items as they stand (and ``fields`` of the migration), if the lease is still ours."""
        async with self.rt.sessionmaker() as session:
            await self._commit(session, **fields)

    async def _commit(self, session: AsyncSession, **fields: Any) -> None:
        """Commit ``session``'s work together with the items as they stand, so that a step's work and the state
        saying it is done land at once (or neither: the lease is gone, and the work is rolled back)."""
        migration = await MigrationRepository(session).held(self.id, self.worker_id)
        if migration is None or migration.status is not MigrationStatus.running:
            raise Stopped
        migration.items = [item.model_dump(mode="json") for item in self.items]
        for name, value in fields.items():
            setattr(migration, name, value)
        await commit(session)

    # --- the walk --------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        provider = self.rt.providers.get(self.body.provider)
        if not isinstance(provider, UpstreamProvider):
            await self._fail("provider_not_configured", f"No upstream provider named '{self.body.provider}'.")
            return
        try:
            await self.save(**({} if self.started else {"started_at": utcnow()}))
            async with UpstreamSource(provider) as source:
                for item in self.items:
                    if item.status in ("completed", "failed", "skipped"):
                        continue
                    item.status, item.error = "running", None
                    try:
                        await self._walk(source, item)
                    except ItemFailed as exc:
                        item.status, item.error = "failed", {"code": exc.code, "message": exc.message}
                        log.info("migration %s: %s failed: %s", self.id, item.upstream_job, exc.message)
                    await self.save()
            await self._finish()
        except Stopped:
            log.info("migration %s stopped; it resumes from its last saved step", self.id)
        except (UpstreamUnavailable, UpstreamRefused, UpstreamGone) as exc:
            code = "upstream_unavailable" if isinstance(exc, UpstreamUnavailable) else "upstream_error"
            await self._fail(code, f"The provider {self.body.provider} failed: {exc}. Resume to carry on.")
        except Exception as exc:
            # A bug, not the upstream: fail it (resumable) rather than leave it for the next worker to trip on.
            log.exception("migration %s failed", self.id)
            await self._fail("internal_error", f"The migration stopped on an internal error ({type(exc).__name__}).")

    async def _walk(self, source: UpstreamSource, item: MigrationItem) -> None:
        steps: dict[str, Callable[[UpstreamSource, MigrationItem], Awaitable[str]]] = {
            "alias": self._alias,
            "copy": self._copy,
            "distil": self._distil,
            "train": self._train,
            "parity": self._parity,
            "version": self._version,
        }
        while item.step != "done":
            self.check()
            item.step = await steps[item.step](source, item)  # type: ignore[assignment]
            await self.save()
        item.status = "completed"

    async def _finish(self) -> None:
        await self.save(status=MigrationStatus.completed, finished_at=utcnow(), error=None)

    async def _fail(self, code: str, message: str) -> None:
        with contextlib.suppress(Stopped):  # cancelled or taken over meanwhile: nothing of ours to record
            await self.save(status=MigrationStatus.failed, error={"code": code, "message": message})

    # --- 1. the name callers use -----------------------------------------------------------------------------------

    async def _alias(self, source: UpstreamSource, item: MigrationItem) -> str:
        """Register the upstream model in the project (it answers through the provider) and, when names are kept,
        an alias named as the upstream model whose first version calls it."""
        assert item.upstream_model is not None
        imported = imported_model_id(self.body.provider, self.project_id, item.upstream_model)
        async with self.rt.sessionmaker() as session:
            models = ModelRepository(session)
            if await models.get(self.project_id, imported) is None:
                await models.add(
                    FineTunedModel(
                        id=imported,
                        project_id=self.project_id,
                        job_id=None,
                        base_model=item.upstream_base_model,
                        parent_model=None,
                        provider=self.body.provider,
                        checkpoint_step=None,
                        artifact=item.upstream_model,
                        prompt_format=None,
                    )
                )
            item.imported_model = imported
            await self._commit(session)
        self.rt.catalog.invalidate(self.project_id)
        if item.alias is not None and "upstream" not in item.alias_versions:
            await self._keep_name(item.alias, imported, item)
        return "copy"

    async def _keep_name(self, name: str, imported: str, item: MigrationItem) -> None:
        gates = self._gates()
        async with self.rt.sessionmaker() as session:
            alias = await AliasRepository(session).get(self.project_id, name)
            if alias is None:
                await alias_service.create(
                    session,
                    self.rt.catalog,
                    self.principal,
                    AliasCreate(name=name, description=f"{item.upstream_model} on {self.body.provider}, migrating"),
                )
            version = await alias_service.add_version(
                session,
                self.rt.catalog,
                self.principal,
                name,
                AliasVersionCreate(
                    targets=[Target(model=imported)],
                    note=f"migration {self.id}: the upstream model, while it is retrained",
                    # An alias made before the migration keeps answering as it did.
                    activate=alias is None or alias.active_version is None,
                ),
                gates,
            )
            item.alias_versions["upstream"] = version.version
            await self._commit(session)
        self.rt.catalog.invalidate(self.project_id)

    def _gates(self) -> GateRuntime:
        return GateRuntime(self.rt.sessionmaker, self.rt.store, self.rt.catalog, self.rt.api_base, self.rt.wakeup)

    # --- 2. the data -----------------------------------------------------------------------------------------------

    async def _copy(self, source: UpstreamSource, item: MigrationItem) -> str:
        # A distilled job trains on answers, not on its old file: only its validation file is copied (for parity).
        wanted = (item.training_file, item.validation_file) if item.action == "copy" else (item.validation_file,)
        for copy in wanted:
            if copy is not None and copy.state == "pending":
                await self._copy_file(source, item, copy)
        training = item.training_file
        if training is not None and training.state == "missing" and item.action == "copy":
            if self.body.distil is None or (
                self.body.distil.prompts_file is None and not _copied(item.validation_file)
            ):
                raise ItemFailed(
                    "training_file_gone",
                    f"The training file {training.upstream_id} is gone from {self.body.provider}, and there is no "
                    "prompt set to distil from: give distil.prompts_file.",
                )
            item.action, item.reason = "distil", f"its training file {training.upstream_id} is gone from the provider"
        return "distil" if item.action == "distil" else "train"

    async def _copy_file(self, source: UpstreamSource, item: MigrationItem, copy: FileCopy) -> None:
        temp = self.rt.store.temp_path()
        try:
            try:
                download = await source.download(copy.upstream_id, temp)
            except UpstreamGone:
                copy.state = "missing"
                return
            if copy.bytes is not None and download.size != copy.bytes:
                raise ItemFailed(
                    "copy_mismatch",
                    f"{copy.upstream_id} came to {download.size} bytes, not the {copy.bytes} {self.body.provider} "
                    "lists: it is copied again on resume.",
                )
            size, sha256 = download.size, download.sha256
            if copy.upstream_sha256 is not None and sha256 != copy.upstream_sha256:
                raise ItemFailed(
                    "copy_mismatch",
                    f"{copy.upstream_id}'s SHA-256 differs from the one {self.body.provider} lists: it is copied again "
                    "on resume.",
                )
            async with self.rt.sessionmaker() as session:
                record = await file_service.store_blob(
                    session,
                    self.rt.store,
                    self.project_id,
                    temp_path=temp,
                    filename=copy.filename or f"{copy.upstream_id}.jsonl",
                    purpose=FilePurpose.fine_tune,
                    size=size,
                    sha256=sha256,
                )
                copy.state, copy.local_id, copy.sha256 = "copied", record.id, sha256
                copy.verified = (
                    "size and sha256 match the provider's" if copy.upstream_sha256 else "size matches the provider's"
                )
                await self._commit(session)
        finally:
            temp.unlink(missing_ok=True)
        await self._validated(record.id, f"the copy of {copy.upstream_id}")

    async def _validated(self, file_id: str, what: str) -> StoredFile:
        await self.rt.validator.validate(self.project_id, file_id)
        async with self.rt.sessionmaker() as session:
            record = await file_service.get(session, self.project_id, file_id)
        if record.status is FileStatus.error:
            raise ItemFailed("invalid_file", f"{what} ({file_id}) failed validation: {record.status_details}")
        return record

    async def _distil(self, source: UpstreamSource, item: MigrationItem) -> str:
        assert item.upstream_model is not None and self.body.distil is not None
        options = self.body.distil
        prompts_file = options.prompts_file or (item.validation_file.local_id if item.validation_file else None)
        if prompts_file is None:
            raise ItemFailed("no_prompts", "There is no prompt set to distil from: give distil.prompts_file.")
        async with self.rt.sessionmaker() as session:
            try:
                record = await file_service.get(session, self.project_id, prompts_file)
            except NotFound:
                raise ItemFailed("no_prompts", f"The prompt set {prompts_file} was deleted.") from None
            path = self.rt.store.path(record.storage_key)
        try:
            prompts = await asyncio.to_thread(distil.read_prompts, path, options.max_prompts)
        except distil.NoPrompts as exc:
            raise ItemFailed("no_prompts", f"{prompts_file}: {exc}") from None
        work_file = self.work_dir / f"{item.upstream_job}.answers.jsonl"
        kind = "prompt_completion" if prompts[0].kind == "prompt" else "chat"
        item.distillation = item.distillation or Distillation(prompts=len(prompts), format=kind)
        if options.batch:
            await self._distil_by_batch(source, item, prompts, work_file)
        # By calls: all of them, or what a batch left unanswered.
        answers = await distil.answer_all(source, item.upstream_model, prompts, options, work_file)
        self.check()
        answered = sum(1 for a in answers.values() if a is not None and a.strip())
        # With the upstream's own validation file there, parity is measured on it: nothing is held out.
        holdout = 0.0 if _copied(item.validation_file) else options.holdout
        train, held = distil.rows(prompts, answers, seed=item.upstream_job, holdout=holdout)
        if not train:
            raise ItemFailed("nothing_distilled", f"{item.upstream_model} answered none of {len(prompts)} prompts.")
        summary = item.distillation.model_copy(
            update={"prompts": len(prompts), "answered": answered, "failed": len(prompts) - answered}
        )
        async with self.rt.sessionmaker() as session:
            summary.training_file = (await self._store_rows(session, item, "distilled-train", train)).id
            if held:  # parity rows only: too few, perhaps, to pass as a fine-tune file
                stored = await self._store_rows(session, item, "distilled-holdout", held, purpose=FilePurpose.user_data)
                summary.holdout_file = stored.id
            item.distillation = summary
            await self._commit(session)
        await self._validated(summary.training_file, "the distilled rows")
        return "train"

    async def _distil_by_batch(
        self, source: UpstreamSource, item: MigrationItem, prompts: list[distil.Prompt], work_file: Path
    ) -> None:
        """Ask the prompts not answered yet in one upstream batch, when the upstream offers the Batch API; the batch
        is saved with the item, so a resumed migration waits for the same one. A batch that fails or expires leaves
        its prompts to the calls that follow."""
        assert item.upstream_model is not None and item.distillation is not None and self.body.distil is not None
        batches = UpstreamBatches(source)
        summary = item.distillation
        if summary.upstream_batch is None:
            done = await asyncio.to_thread(distil.answered, work_file)
            pending = [i for i in range(len(prompts)) if i not in done]
            requests = distil.batch_requests(item.upstream_model, prompts, pending, self.body.distil)
            if not pending or requests is None or not await batches.offered():
                return
            endpoint, lines = requests
            summary.upstream_batch = await batches.start(endpoint, lines, f"{self.id}-{item.upstream_job}.jsonl")
            summary.via = "batch"
            await self.save()
        batch_id = summary.upstream_batch
        while not (state := await batches.state(batch_id)).ended:
            self.check()
            await asyncio.sleep(self.rt.poll_seconds)
        if state.status != "completed":
            log.info("migration %s: upstream batch %s %s; asking by calls", self.id, batch_id, state.status)
            return
        found: dict[int, str | None] = {}
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id is not None:
                found.update(distil.batch_answers(await batches.results(file_id)))
        done = await asyncio.to_thread(distil.answered, work_file)
        await asyncio.to_thread(distil.record, work_file, {i: a for i, a in found.items() if i not in done})

    async def _store_rows(
        self,
        session: AsyncSession,
        item: MigrationItem,
        name: str,
        rows: list[dict[str, Any]],
        *,
        purpose: FilePurpose = FilePurpose.fine_tune,
    ) -> StoredFile:
        """``rows`` as a JSONL file of the project, in the caller's transaction."""
        temp = self.rt.store.temp_path()
        await asyncio.to_thread(distil.write_jsonl, temp, rows)
        size, sha256 = await asyncio.to_thread(digest, temp)
        return await file_service.store_blob(
            session,
            self.rt.store,
            self.project_id,
            temp_path=temp,
            filename=f"{item.upstream_job}-{name}.jsonl",
            purpose=purpose,
            size=size,
            sha256=sha256,
        )

    # --- 3. the new model ------------------------------------------------------------------------------------------

    async def _train(self, source: UpstreamSource, item: MigrationItem) -> str:
        if item.local_job is None:
            await self._create_job(item)
            self.rt.wakeup.set()
        job_id = item.local_job
        assert job_id is not None
        while True:
            self.check()
            async with self.rt.sessionmaker() as session:
                try:
                    job = await job_service.get(session, self.project_id, job_id)
                except NotFound:
                    raise ItemFailed("job_deleted", f"The new job {job_id} is gone.") from None
            if job.status in TERMINAL:
                break
            await asyncio.sleep(self.rt.poll_seconds)
        if job.status is not JobStatus.succeeded or job.fine_tuned_model is None:
            error = job.error or {}
            raise ItemFailed(
                "training_failed",
                f"The new job {job.id} {job.status.value}" + (f": {error.get('message')}" if error else "."),
            )
        item.local_model = job.fine_tuned_model
        return "parity"

    async def _create_job(self, item: MigrationItem) -> None:
        training, validation = self._training_files(item)
        method = item.target_method or "supervised"
        metadata = {
            MIGRATION_KEY: self.id,
            "upstream_provider": self.body.provider,
            "upstream_job": item.upstream_job[:512],
            "upstream_model": (item.upstream_model or "")[:512],
            "ftgw_eval": "off",  # the migration's parity eval is the one that matters
        }
        body = CreateJobRequest.model_validate(
            {
                "model": self.body.base_model,
                "training_file": training,
                "validation_file": validation,
                "suffix": item.suffix,
                "seed": _seed(item),
                "metadata": metadata,
                "method": {"type": method, method: {"hyperparameters": item.hyperparameters}},
            }
        )
        async with self.rt.sessionmaker() as session:
            try:
                job = await job_service.create(session, self.rt.providers, self.project_id, body)
            except GatewayError as exc:
                raise ItemFailed("job_refused", f"The new job was refused: {exc.message}") from None
            item.local_job = job.id
            await self._commit(session)

    @staticmethod
    def _training_files(item: MigrationItem) -> tuple[str, str | None]:
        """The new job's training file (copied or distilled) and validation file (the upstream's, copied)."""
        if item.distillation is not None and item.distillation.training_file is not None:
            training = item.distillation.training_file
        else:
            assert item.training_file is not None and item.training_file.local_id is not None
            training = item.training_file.local_id
        validation = item.validation_file.local_id if item.validation_file is not None else None
        return training, validation if _copied(item.validation_file) else None

    async def _parity_rows(self, item: MigrationItem) -> tuple[str, str | None] | None:
        """``(file, its format)`` parity is measured on: the upstream's validation file, else the held-out answers."""
        _, validation = self._training_files(item)
        if validation is not None:
            async with self.rt.sessionmaker() as session:
                record = await file_service.get(session, self.project_id, validation)
            return validation, (record.validation or {}).get("format")
        if item.distillation is not None and item.distillation.holdout_file is not None:
            return item.distillation.holdout_file, item.distillation.format
        return None

    # --- 4. parity -------------------------------------------------------------------------------------------------

    async def _parity(self, source: UpstreamSource, item: MigrationItem) -> str:
        assert item.local_model is not None and item.imported_model is not None
        if item.parity is None:
            rows = await self._parity_rows(item)
            if rows is None:
                item.reason = (item.reason + "; " if item.reason else "") + "no validation rows: parity not measured"
                return "version"
            try:
                await self._queue_parity(item, *rows)
            except validation_evals.NothingToEvaluate as exc:
                item.reason = (item.reason + "; " if item.reason else "") + f"parity not measured: {exc}"
                return "version"
            self.rt.wakeup.set()
        parity = item.parity
        assert parity is not None
        while True:
            self.check()
            async with self.rt.sessionmaker() as session:
                read = await comparisons.read(
                    session,
                    self.project_id,
                    parity.eval_id,
                    [parity.upstream_run_id, parity.migrated_run_id],
                    disagreements_limit=EXAMPLES,
                )
            if read.status != "in_progress":
                break
            await asyncio.sleep(self.rt.poll_seconds)
        item.parity = _parity_of(parity, read, self.body.parity.max_regression)
        return "version"

    async def _queue_parity(self, item: MigrationItem, file_id: str, data_format: str | None) -> None:
        """The parity eval and its two runs, queued in the transaction that records them on the item."""
        assert item.local_model is not None and item.imported_model is not None
        async with self.rt.sessionmaker() as session:
            validation = await file_service.get(session, self.project_id, file_id)
            tuned = await ModelRepository(session).get(self.project_id, item.local_model)
            fmt = PromptFormat.from_stored(tuned.prompt_format) if tuned is not None else None
            rows = await asyncio.to_thread(
                validation_evals.read_rows,
                self.rt.store.path(validation.storage_key),
                data_format,
                fmt,
                classification=bool(fmt and fmt.labels),
                tokenizer=self.body.base_model,
            )
            rows = validation_evals.Rows(
                rows.kind, rows.items[: self.body.parity.max_rows], rows.total, rows.max_tokens
            )
            stored = await validation_evals.store_rows(
                session, self.rt.store, self.project_id, f"{item.upstream_job}-parity.jsonl", rows.items
            )
            check = validation_evals.criterion(rows.kind)
            body = CreateEvalRequest.model_validate(
                {
                    "name": f"Parity of {item.upstream_model}",
                    "metadata": {MIGRATION_KEY: self.id, "upstream_job": item.upstream_job[:512]},
                    "data_source_config": {
                        "type": "custom",
                        "item_schema": validation_evals.item_schema(rows.kind),
                        "include_sample_schema": True,
                    },
                    "testing_criteria": [check],
                }
            )
            evaluation = await eval_service.create(session, None, self.project_id, body)
            runs = []
            for role, model in (("upstream", item.imported_model), ("migrated", item.local_model)):
                runs.append(
                    await eval_service.create_own_run(
                        session,
                        self.rt.store,
                        self.project_id,
                        evaluation.id,
                        validation_evals.data_source(rows, model, stored.id),
                        name=f"Parity of {item.upstream_model}: {role} {model}",
                        metadata={MIGRATION_KEY: self.id, "role": role},
                        api_base=self.rt.api_base,
                    )
                )
            item.parity = Parity(
                eval_id=evaluation.id,
                upstream_run_id=runs[0].id,
                migrated_run_id=runs[1].id,
                status="in_progress",
                rows=len(rows.items),
            )
            await self._commit(session)

    # --- 5. the version the switch promotes ------------------------------------------------------------------------

    async def _version(self, source: UpstreamSource, item: MigrationItem) -> str:
        if item.alias is None or "migrated" in item.alias_versions:
            return "done"
        assert item.local_model is not None and item.imported_model is not None
        async with self.rt.sessionmaker() as session:
            version = await alias_service.add_version(
                session,
                self.rt.catalog,
                self.principal,
                item.alias,
                AliasVersionCreate(
                    targets=[Target(model=item.local_model)],
                    fallbacks=[item.imported_model],
                    note=f"migration {self.id}: retrained from {item.upstream_job}, the upstream model as fallback",
                    activate=False,
                ),
                self._gates(),
            )
            item.alias_versions["migrated"] = version.version
            await self._commit(session)
        self.rt.catalog.invalidate(self.project_id)
        return "done"


def _copied(copy: FileCopy | None) -> bool:
    return copy is not None and copy.state == "copied" and copy.local_id is not None


def _seed(item: MigrationItem) -> int | None:
    for translation in item.translations:
        if translation.field == "seed" and isinstance(translation.local, int):
            return translation.local
    return None


def _parity_of(queued: Parity, read: comparisons.ComparisonOut, max_regression: float | None) -> Parity:
    upstream, migrated = read.runs
    criteria = []
    for theirs, ours in zip(upstream.per_testing_criteria, migrated.per_testing_criteria, strict=True):
        difference = (
            (ours.pass_rate - theirs.pass_rate) * 100
            if ours.pass_rate is not None and theirs.pass_rate is not None
            else None
        )
        criteria.append(
            CriterionParity(
                testing_criteria=theirs.testing_criteria,
                name=theirs.name,
                upstream=_figures(theirs),
                migrated=_figures(ours),
                difference=difference,
            )
        )
    holds = None
    if max_regression is not None:
        holds = read.status == "completed" and all(
            c.difference is not None and -c.difference <= max_regression + 1e-9 for c in criteria
        )
    examples = [
        {
            "item": d.datasource_item,
            "upstream": d.outcomes[0].output_text,
            "migrated": d.outcomes[1].output_text,
            "passed": {"upstream": d.outcomes[0].passed, "migrated": d.outcomes[1].passed},
        }
        for d in read.disagreements.data
    ]
    status = "completed" if read.status == "completed" else "failed"
    return queued.model_copy(
        update={
            "status": status,
            "criteria": criteria,
            "disagreements": read.disagreements.total,
            "examples": examples,
            "holds": holds,
        }
    )


def _figures(rate: comparisons.Rate) -> dict[str, Any]:
    return rate.model_dump(include={"passed", "total", "pass_rate", "ci_low", "ci_high"})
