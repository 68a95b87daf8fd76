"""Building the inference gateway from settings: its backends, its routing, its gateway. The API process and the
standalone worker (which runs eval runs through its own gateway) build it the same way."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.inference.backends import Backend, Backends
from app.inference.backends.local import LocalBackend
from app.inference.backends.upstream import UpstreamBackend
from app.inference.backends.vllm import VllmBackend
from app.inference.gateway import InferenceGateway, InFlight
from app.inference.upstream import UpstreamClient
from app.providers.registry import ProviderRegistry
from app.registry.routing import ModelCatalog
from app.usage.limits import Limiter, RateLimiter
from app.usage.service import UsageMeter

LOCAL = "local"


def build_backends(settings: Settings, providers: ProviderRegistry, traffic: InFlight | None = None) -> Backends:
    """The local engine, one backend per upstream provider, one per vLLM fleet (which then serves the local
    models of its base model, base and fine-tuned alike). ``traffic`` tells the local engine about the calls in
    flight (:class:`InFlight`)."""
    local = providers.get(LOCAL)
    backends: list[Backend] = [
        LocalBackend(
            local.store,  # type: ignore[union-attr]  # the local provider is always configured
            max_adapters=settings.engine_max_adapters,
            max_batch_size=settings.engine_max_batch_size,
            default_max_tokens=settings.default_max_tokens,
            traffic=traffic,
            int8_models=frozenset(settings.engine_int8_models),
        )
    ]
    backends += [UpstreamBackend(UpstreamClient(config)) for config in settings.providers]
    backends += [
        VllmBackend(config, data_dir=settings.data_dir.resolve(), default_max_tokens=settings.default_max_tokens)
        for config in settings.vllm
    ]
    serving = {(LOCAL, config.base_model): config.name for config in settings.vllm}
    return Backends(backends, serving)


def build_gateway(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderRegistry,
    meter: UsageMeter,
    limiter: Limiter | None = None,
) -> InferenceGateway:
    """A gateway with the settings' backends and routing, metering usage into ``meter`` (the caller flushes it),
    rate limits in this process unless ``limiter`` is shared. The caller closes ``gateway.backends``."""
    in_flight = InFlight()
    backends = build_backends(settings, providers, in_flight)
    catalog = ModelCatalog(providers, sessionmaker, ttl_seconds=settings.route_cache_seconds, serving=backends.serving)
    return InferenceGateway(catalog, backends, meter, limiter or RateLimiter(), in_flight)
