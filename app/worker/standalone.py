"""``ftgw worker``: workers outside the gateway process, on any host sharing the database and data folder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from app.batches.tasks import BatchTask
from app.config import Settings
from app.datasets.validation import UploadValidator
from app.db import create_engine_from_url, create_sessionmaker
from app.evals.tasks import EvalRunTask
from app.files.storage import BlobStore
from app.fine_tuning.events import DISPATCH_WAKEUP
from app.fine_tuning.tasks import TrainingTask
from app.inference.setup import build_gateway
from app.kit.tasks import TaskRunner
from app.migration.runner import MigrationTask
from app.observability.logging import configure_logging
from app.providers.setup import build_providers
from app.shared import Shared
from app.tokenizers import seed_tiktoken_cache
from app.usage.service import UsageMeter
from app.webhooks.service import Dispatcher
from app.worker.runner import Worker
from app.worker.wakeup import Wakeup

log = logging.getLogger(__name__)


async def run_workers(settings: Settings, concurrency: int) -> None:
    configure_logging(settings.log_level, settings.log_format)
    settings.ensure_dirs()
    await asyncio.to_thread(seed_tiktoken_cache, settings.tiktoken_dir)
    engine = create_engine_from_url(settings.resolved_database_url)
    dispatch_wakeup = asyncio.Event()
    sessionmaker = create_sessionmaker(engine, info={DISPATCH_WAKEUP: dispatch_wakeup})
    store = BlobStore(settings.files_dir, settings.tmp_dir)
    providers = build_providers(settings)
    dispatcher = Dispatcher.from_settings(sessionmaker, settings, dispatch_wakeup)
    meter = UsageMeter(sessionmaker)
    # With FTGW_REDIS_URL, eval runs count against the keys' shared limits, follow route changes at once, and a
    # usage read anywhere includes this worker's.
    shared = await Shared.start(settings)
    limiter = shared.limiter if shared is not None else None
    gateway = build_gateway(settings, sessionmaker, providers, meter, limiter)
    if shared is not None:
        await shared.follow(gateway.catalog, meter)
    tasks = [
        asyncio.create_task(dispatcher.run_forever(), name="ftgw-webhooks"),
        asyncio.create_task(meter.run_forever(settings.usage_flush_seconds), name="ftgw-usage"),
    ]
    validator = UploadValidator(sessionmaker, store, TaskRunner())

    def worker() -> Worker:
        wakeup = Wakeup()  # a migration nudges its own worker's loops when it queues a job or an eval run
        migrations = MigrationTask.from_settings(
            settings, sessionmaker, store, providers, gateway.catalog, validator, wakeup
        )
        return Worker(
            [
                TrainingTask(settings, sessionmaker, store, providers),
                *[EvalRunTask.from_settings(settings, sessionmaker, store, gateway)] * settings.eval_runs_at_once,
                migrations,
                BatchTask.from_settings(settings, sessionmaker, store, gateway),
            ],
            poll_seconds=settings.worker_poll_seconds,
            wakeup=wakeup,
        )

    workers = (worker() for _ in range(concurrency))
    tasks += [asyncio.create_task(worker.run_forever(), name=f"ftgw-worker-{i}") for i, worker in enumerate(workers)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: running jobs are released and resume on another worker")
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if shared is not None:
        await shared.close()
    await gateway.backends.aclose()
    await engine.dispose()
