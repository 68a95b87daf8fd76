"""The local backend: this process's own engine (``app.providers.local.engine``), created on first use so a
process that serves no local model never loads torch."""

from __future__ import annotations

from app.errors import InvalidRequest
from app.inference import local
from app.inference.answer import Answer
from app.inference.backends import FirstToken, Health
from app.inference.schemas import ChatCompletionRequest, CompletionRequest
from app.observability.metrics import EngineLoad
from app.providers.local.base_models import BaseModelStore
from app.providers.local.engine import MAX_LOGPROBS, Engine, GenerationRequest, Traffic
from app.registry.routing import Endpoint


class LocalBackend:
    def __init__(
        self,
        store: BaseModelStore,
        *,
        max_adapters: int,
        max_batch_size: int,
        default_max_tokens: int,
        traffic: Traffic | None = None,
        int8_models: frozenset[str] = frozenset(),
    ) -> None:
        self.name = "local"
        self.store = store
        self.max_adapters = max_adapters
        self.max_batch_size = max_batch_size
        self.default_max_tokens = default_max_tokens  # a chat completion's bound when the caller sets none
        self.traffic = traffic  # the gateway's calls in flight (the engine's Traffic)
        self.int8_models = int8_models  # base models whose decode steps read int8 weights
        self._engine: Engine | None = None

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(
                self.store,
                max_adapters=self.max_adapters,
                max_batch_size=self.max_batch_size,
                traffic=self.traffic,
                int8_models=self.int8_models,
            )
        return self._engine

    async def chat(self, endpoint: Endpoint, body: ChatCompletionRequest) -> Answer:
        return await local.chat(self.engine(), endpoint, body, default_max_tokens=self.default_max_tokens)

    async def completion(self, endpoint: Endpoint, body: CompletionRequest) -> Answer:
        return await local.completion(self.engine(), endpoint, body)

    async def first_token(self, endpoint: Endpoint, prompt: str) -> FirstToken:
        engine = self.engine()
        ids = engine.encode_text(endpoint.base_model, prompt)
        if not ids:
            raise InvalidRequest("The input is empty.", param="input")
        request = GenerationRequest(
            model=endpoint.base_model,
            prompt_ids=ids,
            adapter=endpoint.adapter,
            max_new_tokens=1,
            temperature=0.0,
            n_logprobs=MAX_LOGPROBS,
        )
        top: dict[str, float] = {}
        async for chunk in engine.generate(request):
            for item in chunk.logprobs:
                top = {t.token: t.logprob for t in item.top} or {item.token: item.logprob}
        return FirstToken(top, len(ids))

    async def warm(self, endpoint: Endpoint) -> None:
        self.engine().warm(endpoint.base_model, endpoint.adapter)  # queued on the engine's thread; returns at once

    async def forget(self, endpoint: Endpoint) -> None:
        return None  # the engine's LRU drops an adapter nobody asks for

    async def health(self) -> Health:
        return Health(True, "loaded" if self._engine is not None else "not started")

    def load(self) -> EngineLoad | None:
        if self._engine is None:
            return None
        running = self._engine.running()
        return EngineLoad(running=running, waiting=max(self._engine.active() - running, 0))

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.close()
