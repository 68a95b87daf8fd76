"""The application factory: settings, engine, blob store, providers, workers wired in the lifespan; routers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from app import __version__
from app.auth.endpoints import router as auth_router
from app.auth.principal import AuthCache
from app.auth.service import auth_service
from app.batches.endpoints import router as batches_router
from app.batches.tasks import BatchTask
from app.config import Settings
from app.console.router import install_console
from app.datasets.endpoints import router as datasets_router
from app.datasets.validation import UploadValidator
from app.db import commit, create_engine_from_url, create_sessionmaker
from app.errors import ErrorResponse, install_error_handlers
from app.evals.endpoints import router as evals_router
from app.evals.grader_endpoints import router as graders_router
from app.evals.scope_endpoints import router as scope_checks_router
from app.evals.tasks import EvalRunTask
from app.evals.watch import RUNS_FINISHED, RunWatch
from app.files.endpoints import router as files_router
from app.files.storage import BlobStore
from app.files.tasks import purge_expired_forever
from app.fine_tuning.endpoints import router as jobs_router
from app.fine_tuning.events import DISPATCH_WAKEUP
from app.fine_tuning.tasks import TrainingTask
from app.health.endpoints import router as health_router
from app.inference import fastpath
from app.inference.endpoints import router as inference_router
from app.inference.setup import build_gateway
from app.kit.netguard import NetworkPolicy
from app.kit.openapi import publish_stream_items
from app.kit.tasks import TaskRunner
from app.kit.text import StorableTextMiddleware
from app.kit.time import unix, utcnow
from app.migration.endpoints import router as migrations_router
from app.migration.runner import MigrationTask
from app.observability.endpoints import install as install_observability
from app.providers.setup import build_providers
from app.registry.alias_endpoints import router as registry_router
from app.registry.endpoints import router as models_router
from app.shared import Shared
from app.tokenizers import seed_tiktoken_cache
from app.uploads.endpoints import router as uploads_router
from app.usage.endpoints import router as usage_router
from app.usage.service import UsageMeter
from app.webhooks.endpoints import router as webhooks_router
from app.webhooks.service import Dispatcher, network_policy
from app.worker.runner import Worker
from app.worker.wakeup import Wakeup

log = logging.getLogger("ftgw")


def announce_bootstrap_key(secret: str) -> None:
    """Show a generated first admin key once, where an operator starting the server will see it."""
    banner = "=" * 72
    print(
        f"\n{banner}\nftgw: created project 'default' and its first admin API key (shown once, store it now):\n\n"
        f"    {secret}\n\nSet FTGW_BOOTSTRAP_KEY to choose this key yourself.\n{banner}\n",
        file=sys.stderr,
        flush=True,
    )


async def bootstrap(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    generated = None
    try:
        async with app.state.sessionmaker() as session:
            generated = await auth_service.bootstrap(session, settings.bootstrap_key)
            await commit(session)
    except IntegrityError:
        log.info("another process bootstrapped the database first")
    except (OperationalError, ProgrammingError) as exc:
        raise RuntimeError(f"The database is not ready ({exc.orig}); run `ftgw migrate` first.") from exc
    if generated:
        announce_bootstrap_key(generated)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.ensure_dirs()
    app.state.started_at = unix(utcnow())
    engine = create_engine_from_url(settings.resolved_database_url)
    app.state.engine = engine
    app.state.worker_wakeup = Wakeup()
    dispatch_wakeup = asyncio.Event()
    app.state.eval_watch = eval_watch = RunWatch()
    app.state.sessionmaker = sessionmaker = create_sessionmaker(
        engine, info={DISPATCH_WAKEUP: dispatch_wakeup, RUNS_FINISHED: eval_watch}
    )
    app.state.blob_store = store = BlobStore(settings.files_dir, settings.tmp_dir)
    app.state.auth_cache = AuthCache(settings.auth_cache_seconds)
    app.state.tasks = runner = TaskRunner()
    app.state.validator = validator = UploadValidator(sessionmaker, store, runner)
    app.state.providers = providers = build_providers(settings)
    app.state.usage = meter = UsageMeter(sessionmaker)
    # With FTGW_REDIS_URL: limits, usage reads and cache invalidations span every replica (app/shared).
    app.state.shared = shared = await Shared.start(settings)
    app.state.inference = gateway = build_gateway(
        settings, sessionmaker, providers, meter, shared.limiter if shared is not None else None
    )
    app.state.catalog = catalog = gateway.catalog
    store.sweep_temp()
    background: list[asyncio.Task[None]] = []
    try:
        # tiktoken would download its BPE files on first use; there is no internet, so seed its cache first.
        await asyncio.to_thread(seed_tiktoken_cache, settings.tiktoken_dir)
        await bootstrap(app)
        await validator.resume_pending()
        if shared is not None:
            await shared.follow(catalog, meter, app.state.auth_cache)

        def start(coro: Coroutine[Any, Any, None], name: str) -> None:
            background.append(asyncio.create_task(coro, name=name))

        start(purge_expired_forever(sessionmaker, store, settings.purge_interval_seconds), "ftgw-upkeep")
        dispatcher = Dispatcher.from_settings(sessionmaker, settings, dispatch_wakeup, app.state.network_policy)
        start(dispatcher.run_forever(), "ftgw-webhooks")
        start(meter.run_forever(settings.usage_flush_seconds), "ftgw-usage")
        if settings.embedded_worker:
            training = TrainingTask(settings, sessionmaker, store, providers, warm=gateway.warm)
            evals = EvalRunTask.from_settings(settings, sessionmaker, store, app.state.inference)
            migrations = MigrationTask.from_settings(
                settings, sessionmaker, store, providers, catalog, validator, app.state.worker_wakeup
            )
            batches = BatchTask.from_settings(settings, sessionmaker, store, app.state.inference)
            worker = Worker(
                [training, *[evals] * settings.eval_runs_at_once, migrations, batches],
                poll_seconds=settings.worker_poll_seconds,
                wakeup=app.state.worker_wakeup,
            )
            app.state.worker = worker
            start(worker.run_forever(), "ftgw-worker")
        # Everything loaded so far (frameworks, models) lives as long as the process: keep it out of the cyclic
        # collector, whose full passes over it would otherwise stall requests for tens of milliseconds.
        gc.freeze()
        yield
    finally:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if shared is not None:
            await shared.close()
        await runner.shutdown()
        await gateway.backends.aclose()
        await engine.dispose()


def create_app(settings: Settings | None = None, *, policy: NetworkPolicy | None = None) -> FastAPI:
    """The gateway. ``policy`` (where calls to user-given URLs may go) defaults to the one the settings describe."""
    app = FastAPI(
        title="ftgw",
        summary="The fine-tuning gateway: datasets, fine-tuning jobs and routed inference, OpenAI-compatible.",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served offline by the console's assets (app/console/assets.py)
        redoc_url=None,
        responses={"default": {"model": ErrorResponse, "description": "OpenAI's error envelope"}},
        # ftgw exports Prometheus metrics (/metrics), not OpenTelemetry: FastAPI's native telemetry would look up
        # the global OTel providers (and the environment) on every request, 5% of a routed call.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings = settings or Settings()
    app.state.network_policy = policy or network_policy(settings)
    install_error_handlers(app)
    app.add_middleware(StorableTextMiddleware)
    # Inference first: routes are matched in order, and its calls are the ones that must be cheap.
    for router in (
        inference_router,
        health_router,
        auth_router,
        files_router,
        uploads_router,
        datasets_router,
        jobs_router,
        scope_checks_router,  # before evals: POST /v1/evals/scope_checks is no eval's update
        evals_router,
        graders_router,
        models_router,
        registry_router,
        migrations_router,
        batches_router,
        usage_router,
        webhooks_router,
    ):
        app.include_router(router)
    install_console(app, settings)
    install_observability(app)  # /metrics; X-Request-ID and latency around everything, errors included
    fastpath.install(app)  # the common inference calls, in front of all middleware (ids and times its own)
    publish_stream_items(app)
    return app
