"""The application factory: settings, engine, blob store and bootstrap wired in the lifespan; routers; errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from app import __version__
from app.auth.endpoints import router as auth_router
from app.auth.principal import AuthCache
from app.auth.service import auth_service
from app.config import Settings
from app.datasets.endpoints import router as datasets_router
from app.datasets.validation import UploadValidator
from app.db import commit, create_engine_from_url, create_sessionmaker
from app.errors import ErrorResponse, install_error_handlers
from app.files.endpoints import router as files_router
from app.files.storage import BlobStore
from app.files.tasks import purge_expired_forever
from app.health.endpoints import router as health_router
from app.kit.tasks import TaskRunner
from app.tokenizers import seed_tiktoken_cache

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


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.ensure_dirs()
    engine = create_engine_from_url(settings.resolved_database_url)
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.blob_store = store = BlobStore(settings.files_dir, settings.tmp_dir)
    app.state.auth_cache = AuthCache(settings.auth_cache_seconds)
    app.state.tasks = runner = TaskRunner()
    app.state.validator = validator = UploadValidator(app.state.sessionmaker, store, runner)
    store.sweep_temp()
    # tiktoken would download its BPE files on first use; there is no internet, so seed its cache first.
    await asyncio.to_thread(seed_tiktoken_cache, settings.tiktoken_dir)
    generated = None
    try:
        async with app.state.sessionmaker() as session:
            generated = await auth_service.bootstrap(session, settings.bootstrap_key)
            await commit(session)
    except IntegrityError:
        log.info("another process bootstrapped the database first")
    except (OperationalError, ProgrammingError) as exc:
        await engine.dispose()
        raise RuntimeError(f"The database is not ready ({exc.orig}); run `ftgw migrate` first.") from exc
    if generated:
        announce_bootstrap_key(generated)
    await validator.resume_pending()
    upkeep = asyncio.create_task(
        purge_expired_forever(app.state.sessionmaker, store, settings.purge_interval_seconds), name="ftgw-upkeep"
    )
    try:
        yield
    finally:
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep
        await runner.shutdown()
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="ftgw",
        summary="The fine-tuning gateway: datasets, fine-tuning jobs and routed inference, OpenAI-compatible.",
        version=__version__,
        lifespan=lifespan,
        responses={"default": {"model": ErrorResponse, "description": "OpenAI's error envelope"}},
    )
    app.state.settings = settings or Settings()
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(files_router)
    app.include_router(datasets_router)
    return app
