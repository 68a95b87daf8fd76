"""Where a request goes: model names and aliases resolved to concrete endpoints, cached off the database.

The inference hot path must not wait on the database. Base models are known at start; a project's fine-tuned
models and aliases are read once and kept for ``FTGW_ROUTE_CACHE_SECONDS``. A change made through this process
(a new alias version, a promotion, a deleted model) drops the project's entries at once; with ``FTGW_REDIS_URL``
set it is announced and every other process drops them too (``app.shared``), otherwise they see it when their
entries expire.

An alias version picks one of its weighted targets per request, by a hash of the sticky key (the ``user`` field
or the ``X-FTGW-Sticky-Key`` header) so one user stays on one target, or at random without one; its fallbacks
follow in order.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.datasets.prompt_format import PromptFormat
from app.errors import GatewayError, NotFound
from app.kit.numbers import parse_decimal
from app.kit.singleflight import SingleFlight
from app.providers.registry import ProviderRegistry
from app.registry.models import AliasVersion, FineTunedModel, ModelAlias
from app.registry.repository import AliasRepository, ModelRepository
from app.registry.schemas import Guard
from app.registry.service import model_not_found

PIN = "@"  # support-bot@3 calls version 3 of support-bot, whichever version is active


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A concrete model that can answer, and the backend that answers for it (``app.inference.backends``)."""

    model: str  # our id: what answered, echoed in `model` and X-FTGW-Model
    backend: str  # the name of the backend that serves it
    base_model: str
    adapter: Path | None = None  # a LoRA adapter on the data folder (a model trained here)
    upstream_model: str | None = None  # the provider's own id (a model that lives upstream)
    prompt_format: PromptFormat | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    model: str
    weight: float
    endpoint: Endpoint | None  # None: the model was deleted since the version was made


@dataclass(frozen=True, slots=True)
class AliasRoute:
    name: str
    version: int
    targets: tuple[Choice, ...]
    fallbacks: tuple[Choice, ...]
    guard: Guard | None
    guard_endpoint: Endpoint | None

    def pick(self, sticky: str | None) -> Choice:
        """One target by weight: the same sticky key always lands on the same target of this version."""
        total = sum(t.weight for t in self.targets)
        if sticky is None:
            point = random.random() * total
        else:
            digest = hashlib.blake2b(f"{self.name}\0{self.version}\0{sticky}".encode(), digest_size=8).digest()
            point = int.from_bytes(digest) / 2**64 * total
        for target in self.targets:
            point -= target.weight
            if point < 0:
                return target
        return self.targets[-1]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to try for one request, in order; the alias and version it came from, when it came from one."""

    candidates: tuple[Endpoint | None, ...]
    names: tuple[str, ...]  # the model ids of the candidates, for error messages
    alias: str | None = None
    version: int | None = None
    guard: Guard | None = None
    guard_endpoint: Endpoint | None = None


Serving = Callable[[str, str], str]  # (provider, base model) -> the backend that serves its models


class ModelCatalog:
    def __init__(
        self,
        providers: ProviderRegistry,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        ttl_seconds: float,
        serving: Serving | None = None,
    ) -> None:
        """``serving`` says which backend answers for a provider's models (by default the provider's own)."""
        self.sessionmaker = sessionmaker
        self.ttl = ttl_seconds
        self.providers = providers
        self.serving: Serving = serving or (lambda provider, _: provider)
        self.base: dict[str, Endpoint] = {}
        for provider in providers.all():
            for info in provider.base_models():
                self.base[info.id] = self.address(provider.name, info.id, None)
        self._projects: dict[str, dict[str, tuple[float, Any]]] = {}
        # One database lookup per (project, name) at a time, whoever else waits for it.
        self._model_lookups: SingleFlight[tuple[str, str], Endpoint] = SingleFlight()
        self._alias_lookups: SingleFlight[tuple[str, str], AliasRoute] = SingleFlight()
        self.announce: Callable[[str], None] | None = None  # with Redis: tells the other replicas (app/shared)

    # --- cache ---------------------------------------------------------------------------------------------------

    def invalidate(self, project_id: str) -> None:
        """The project's routes changed: drop them here and announce it to the other replicas."""
        self.forget(project_id)
        if self.announce is not None:
            self.announce(project_id)

    def forget(self, project_id: str) -> None:
        """Drop the project's routes in this process only (another replica announced a change)."""
        self._projects.pop(project_id, None)

    def forget_all(self) -> None:
        self._projects.clear()

    def _cached(self, project_id: str, key: str) -> Any:
        entry = self._projects.get(project_id, {}).get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def _keep(self, project_id: str, key: str, value: Any) -> None:
        if self.ttl > 0:
            self._projects.setdefault(project_id, {})[key] = (time.monotonic() + self.ttl, value)

    # --- resolving -----------------------------------------------------------------------------------------------

    async def plan(self, project_id: str, name: str, sticky: str | None = None) -> Plan:
        """The endpoints to try for ``name``, in order. Unknown names are a 404 on ``model``."""
        endpoint = self.base.get(name)
        if endpoint is not None:
            return Plan((endpoint,), (name,))
        cached = self._cached(project_id, name) if name.startswith("ft:") else None
        if isinstance(cached, Endpoint):  # a fine-tuned model of ours, already resolved: one lookup, no more
            return Plan((cached,), (name,))
        if name.startswith("ft:") and not isinstance(cached, AliasRoute):
            try:
                return Plan((await self.endpoint(project_id, name),), (name,))
            except NotFound:
                pass  # not a model of ours: an alias kept under another provider's model id (app.migration)?
        route = await self.alias(project_id, name)
        target = route.pick(sticky)
        chain = (target, *route.fallbacks)
        return Plan(
            candidates=tuple(c.endpoint for c in chain),
            names=tuple(c.model for c in chain),
            alias=route.name,
            version=route.version,
            guard=route.guard,
            guard_endpoint=route.guard_endpoint,
        )

    async def endpoint(self, project_id: str, model: str) -> Endpoint:
        """A base or fine-tuned model (never an alias)."""
        found = self.base.get(model)
        if found is not None:
            return found
        if not model.startswith("ft:"):
            raise model_not_found(model)
        cached = self._cached(project_id, model)
        if isinstance(cached, Endpoint):
            return cached
        return await self._model_lookups.run((project_id, model), lambda: self._look_up_model(project_id, model))

    async def _look_up_model(self, project_id: str, model: str) -> Endpoint:
        async with self.sessionmaker() as session:
            tuned = await ModelRepository(session).get(project_id, model)
        if tuned is None:
            raise model_not_found(model)
        endpoint = self._fine_tuned(tuned)
        self._keep(project_id, model, endpoint)
        return endpoint

    async def alias(self, project_id: str, name: str) -> AliasRoute:
        cached = self._cached(project_id, name)
        if isinstance(cached, AliasRoute):
            return cached
        return await self._alias_lookups.run((project_id, name), lambda: self._look_up_alias(project_id, name))

    async def _look_up_alias(self, project_id: str, name: str) -> AliasRoute:
        alias_name, pin, pinned = name.partition(PIN)
        pinned_number = parse_decimal(pinned) if pin else None
        if pin and pinned_number is None:
            raise model_not_found(name)
        async with self.sessionmaker() as session:
            repo = AliasRepository(session)
            alias = await repo.get(project_id, alias_name)
            number = pinned_number if pin else (alias.active_version if alias else None)
            version = await repo.version(alias.id, number) if alias is not None and number is not None else None
            if alias is None or version is None:
                raise model_not_found(name)
            route = await self._route(session, project_id, alias, version)
        self._keep(project_id, name, route)
        return route

    async def _route(
        self, session: AsyncSession, project_id: str, alias: ModelAlias, version: AliasVersion
    ) -> AliasRoute:
        models = ModelRepository(session)

        async def choice(model: str, weight: float = 1.0) -> Choice:
            endpoint = self.base.get(model)
            if endpoint is None and model.startswith("ft:"):
                tuned = await models.get(project_id, model)
                endpoint = self._fine_tuned(tuned) if tuned is not None else None
            return Choice(model, weight, endpoint)

        targets = tuple([await choice(t["model"], float(t["weight"])) for t in version.targets])
        fallbacks = tuple([await choice(m) for m in version.fallbacks])
        guard = Guard.model_validate(version.guard) if version.guard else None
        guard_endpoint = (await choice(guard.model)).endpoint if guard else None
        return AliasRoute(alias.name, version.version, targets, fallbacks, guard, guard_endpoint)

    def address(
        self,
        provider: str,
        base_model: str,
        artifact: str | None,
        model: str | None = None,
        prompt_format: PromptFormat | None = None,
    ) -> Endpoint:
        """The endpoint of ``provider``'s ``base_model`` (``artifact`` None) or of a model it trained from it."""
        trainer = self.providers.get(provider)
        if trainer is None:
            raise GatewayError(f"No provider named '{provider}' is configured.", code="provider_not_configured")
        where = trainer.address(base_model, artifact)
        return Endpoint(
            model=model or base_model,
            backend=self.serving(provider, base_model),
            base_model=base_model,
            adapter=where.adapter,
            upstream_model=where.remote_id,
            prompt_format=prompt_format,
        )

    def _fine_tuned(self, tuned: FineTunedModel) -> Endpoint:
        fmt = PromptFormat.from_stored(tuned.prompt_format)
        return self.address(tuned.provider, tuned.base_model, tuned.artifact, tuned.id, prompt_format=fmt)
