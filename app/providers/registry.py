"""Which provider trains which base model."""

from __future__ import annotations

from collections.abc import Iterable

from app.providers.base import BaseModelInfo, TrainingProvider


class ProviderRegistry:
    def __init__(self, providers: Iterable[TrainingProvider]) -> None:
        self._providers = {p.name: p for p in providers}

    def names(self) -> list[str]:
        return list(self._providers)

    def all(self) -> list[TrainingProvider]:
        return list(self._providers.values())

    def get(self, name: str) -> TrainingProvider | None:
        return self._providers.get(name)

    def for_base_model(self, model: str) -> tuple[TrainingProvider, BaseModelInfo] | None:
        for provider in self._providers.values():
            for info in provider.base_models():
                if info.id == model:
                    return provider, info
        return None

    def base_models(self) -> list[BaseModelInfo]:
        return [info for provider in self._providers.values() for info in provider.base_models()]
