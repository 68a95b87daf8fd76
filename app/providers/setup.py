"""Building the provider registry from settings: the local trainer and any upstream services."""

from __future__ import annotations

from app.config import Settings
from app.providers.base import TrainingProvider
from app.providers.registry import ProviderRegistry


def build_providers(settings: Settings) -> ProviderRegistry:
    from app.providers.local.provider import LocalProvider
    from app.providers.upstream import UpstreamProvider

    providers: list[TrainingProvider] = [LocalProvider(settings)]
    providers += [UpstreamProvider(config, settings) for config in settings.providers]
    return ProviderRegistry(providers)
