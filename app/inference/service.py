"""Generating chat completions and completions with the local engine, for base and fine-tuned models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.inference.schemas import Sampling
from app.kit.ids import random_token
from app.providers.local.engine import Engine
from app.providers.local.engine_types import GenerationChunk, GenerationRequest
from app.providers.local.engine_types import TokenLogprob as EngineLogprob
from app.providers.local.provider import LocalProvider
from app.providers.registry import ProviderRegistry
from app.registry.service import model_not_found, registry_service


@dataclass(frozen=True)
class Target:
    """What answers a request: a local base model, with a fine-tuned adapter or not."""

    model: str  # as the caller named it, echoed in responses
    base_model: str
    adapter: Path | None


@dataclass
class ChoiceResult:
    index: int
    text: str = ""
    finish_reason: Literal["stop", "length"] = "length"
    logprobs: list[EngineLogprob] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def absorb(self, chunk: GenerationChunk) -> None:
        """Add one streamed chunk to the choice's running total."""
        self.text += chunk.text
        self.logprobs.extend(chunk.logprobs)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.prompt_tokens = chunk.usage.prompt_tokens
            self.completion_tokens = chunk.usage.completion_tokens


class InferenceService:
    async def resolve(self, session: AsyncSession, providers: ProviderRegistry, project_id: str, model: str) -> Target:
        local = providers.get("local")
        assert isinstance(local, LocalProvider)
        if model in local.store.names():
            return Target(model, model, None)
        if model.startswith("ft:"):
            tuned = await registry_service.get_fine_tuned(session, project_id, model)
            if tuned.provider != local.name:
                raise InvalidRequest(
                    f"The model '{model}' is served by the provider '{tuned.provider}'; ftgw does not forward "
                    "inference there yet.",
                    param="model",
                    code="model_not_served",
                )
            return Target(model, tuned.base_model, local.data_dir / tuned.artifact)
        raise model_not_found(model)

    @staticmethod
    def requests(
        target: Target,
        prompts: list[tuple[int, ...]],
        body: Sampling,
        *,
        max_tokens: int,
        n_logprobs: int,
    ) -> list[GenerationRequest]:
        """``body.n`` generations of every prompt, choice index ``prompt * n + i`` as OpenAI numbers them."""
        try:
            return [
                GenerationRequest(
                    model=target.base_model,
                    prompt_ids=prompt,
                    adapter=target.adapter,
                    max_new_tokens=max_tokens,
                    temperature=body.temperature,
                    top_p=body.top_p,
                    # n choices with one seed must still differ: each choice gets its own derived seed.
                    seed=None if body.seed is None else body.seed + p * body.n + i,
                    stop=body.stops(),
                    n_logprobs=n_logprobs,
                )
                for p, prompt in enumerate(prompts)
                for i in range(body.n)
            ]
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None

    async def complete(self, engine: Engine, requests: list[GenerationRequest]) -> list[ChoiceResult]:
        """Every choice generated concurrently (the engine batches them), collected whole."""

        async def one(index: int, request: GenerationRequest) -> ChoiceResult:
            result = ChoiceResult(index=index)
            async for chunk in engine.generate(request):
                result.absorb(chunk)
            return result

        return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))

    async def stream(
        self, engine: Engine, requests: list[GenerationRequest]
    ) -> AsyncIterator[tuple[int, GenerationChunk]]:
        """Chunks of every choice as they come, tagged with their choice index."""
        queue: asyncio.Queue[tuple[int, GenerationChunk] | BaseException | None] = asyncio.Queue()

        async def pump(index: int, request: GenerationRequest) -> None:
            try:
                async for chunk in engine.generate(request):
                    await queue.put((index, chunk))
            except Exception as exc:
                await queue.put(exc)
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()  # a client that went away stops its generations


def response_id(prefix: str) -> str:
    return f"{prefix}-{random_token(24)}"


def now() -> int:
    return int(time.time())


inference_service = InferenceService()
