"""Building the inference gateway outside the API process: the standalone worker runs eval runs through its own."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.inference.gateway import InferenceGateway
from app.inference.upstream import UpstreamClients
from app.providers.local.engine import Engine
from app.providers.registry import ProviderRegistry
from app.registry.routing import ModelCatalog
from app.usage.limits import Limiter, RateLimiter
from app.usage.service import UsageMeter


def new_local_engine(settings: Settings, providers: ProviderRegistry) -> Engine:
    return Engine(
        providers.get("local").store,  # type: ignore[union-attr]  # the local provider is always configured
        max_adapters=settings.engine_max_adapters,
        max_batch_size=settings.engine_max_batch_size,
    )


class LazyEngine:
    """The local engine, created on first use, so a process that serves no local model never loads torch."""

    def __init__(self, settings: Settings, providers: ProviderRegistry) -> None:
        self.settings = settings
        self.providers = providers
        self.engine: Engine | None = None

    def __call__(self) -> Engine:
        if self.engine is None:
            self.engine = new_local_engine(self.settings, self.providers)
        return self.engine

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()


def worker_gateway(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderRegistry,
    meter: UsageMeter,
    limiter: Limiter | None = None,
) -> tuple[InferenceGateway, UpstreamClients, LazyEngine]:
    """A gateway for a worker's eval runs: the API's routing, prompt formats and usage metering (into ``meter``,
    which the caller flushes), rate limits (in this process unless ``limiter`` is shared), its own local engine and
    upstream clients (the caller closes both)."""
    catalog = ModelCatalog(providers, sessionmaker, ttl_seconds=settings.route_cache_seconds)
    clients = UpstreamClients(settings.providers)
    engine = LazyEngine(settings, providers)
    gateway = InferenceGateway(
        catalog, clients, meter, limiter or RateLimiter(), engine=engine, default_max_tokens=settings.default_max_tokens
    )
    return gateway, clients, engine
