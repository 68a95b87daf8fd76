"""Answering with the local engine: chat and text completions of base and fine-tuned local models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from app.errors import InvalidRequest
from app.inference.answer import Answer, CompletionInput, Tally, include_usage, now, response_id
from app.inference.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    Sampling,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from app.kit.tasks import all_or_none
from app.providers.local.engine import Engine, GenerationChunk, GenerationRequest
from app.providers.local.engine import TokenLogprob as EngineLogprob
from app.registry.routing import Endpoint


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


def count(results: list[ChoiceResult], tally: Tally) -> Usage:
    """OpenAI's usage: each prompt counted once (however many choices it has), every completion token."""
    tally.prompt_tokens = sum({r.index: r.prompt_tokens for r in results}.values()) if results else 0
    tally.completion_tokens = sum(r.completion_tokens for r in results)
    return Usage(**tally.usage())


def build_requests(
    engine: Engine,
    endpoint: Endpoint,
    prompts: list[tuple[int, ...]],
    body: Sampling,
    *,
    prompt_param: str,
    max_tokens: int,
    n_logprobs: int,
    stop: tuple[str, ...],
) -> list[GenerationRequest]:
    """``body.n`` generations of every prompt, choice index ``prompt * n + i`` as OpenAI numbers them.

    Checked against the model first (a 400 naming the parameter, before anything runs): prompts that leave no
    room in its context, ``logit_bias`` token ids it does not have.
    """
    context, vocabulary = engine.limits(endpoint.base_model)
    longest = max(len(p) for p in prompts)
    if longest >= context:
        raise InvalidRequest(
            f"This model's context is {context} tokens; the prompt has {longest}, leaving no room for a completion.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    biases = body.token_biases()
    unknown = [token for token, _ in biases if token >= vocabulary]
    if unknown:
        raise InvalidRequest(
            f"Invalid key in 'logit_bias': {unknown[0]}. This model's token ids go up to {vocabulary - 1}.",
            param="logit_bias",
        )
    try:
        return [
            GenerationRequest(
                model=endpoint.base_model,
                prompt_ids=prompt,
                adapter=endpoint.adapter,
                max_new_tokens=max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                frequency_penalty=body.frequency_penalty,
                presence_penalty=body.presence_penalty,
                logit_bias=biases,
                # n choices with one seed must still differ: each choice gets its own derived seed.
                seed=None if body.seed is None else body.seed + p * body.n + i,
                stop=stop,
                n_logprobs=n_logprobs,
            )
            for p, prompt in enumerate(prompts)
            for i in range(body.n)
        ]
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


async def complete_all(engine: Engine, requests: list[GenerationRequest]) -> list[ChoiceResult]:
    """Every choice generated concurrently (the engine batches them), collected whole. One failing, or the
    caller going away (this task cancelled), stops the others: nobody would read them."""

    async def one(index: int, request: GenerationRequest) -> ChoiceResult:
        result = ChoiceResult(index=index)
        async for chunk in engine.generate(request):
            result.absorb(chunk)
        return result

    return await all_or_none([one(i, r) for i, r in enumerate(requests)])


async def stream_all(engine: Engine, requests: list[GenerationRequest]) -> AsyncIterator[tuple[int, GenerationChunk]]:
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


def chat_logprobs(items: list[EngineLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            TokenLogprob(
                token=item.token,
                logprob=item.logprob,
                bytes=list(item.token.encode()),
                top_logprobs=[
                    TopLogprob(token=t.token, logprob=t.logprob, bytes=list(t.token.encode())) for t in item.top
                ],
            )
            for item in items
        ]
    )


def completion_logprobs(items: list[EngineLogprob]) -> CompletionLogprobs:
    offsets, position = [], 0
    for item in items:
        offsets.append(position)
        position += len(item.token)
    return CompletionLogprobs(
        tokens=[i.token for i in items],
        token_logprobs=[i.logprob for i in items],
        top_logprobs=[{t.token: t.logprob for t in i.top} for i in items],
        text_offset=offsets,
    )


ChoiceFormatter = Callable[[int, GenerationChunk, bool], dict[str, Any] | None]


async def _events(
    engine: Engine,
    requests: list[GenerationRequest],
    base: dict[str, Any],
    tally: Tally,
    with_usage: bool,
    choice_of: ChoiceFormatter,
    opening: list[dict[str, Any]] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The chunks of every choice as they come, in ``base``'s envelope; usage last when asked for."""
    for first in opening or []:
        yield {**base, "choices": [first]}
    results = [ChoiceResult(index=i) for i in range(len(requests))]
    async for index, chunk in stream_all(engine, requests):
        started = bool(results[index].text)
        results[index].absorb(chunk)
        choice = choice_of(index, chunk, not started)
        if choice is not None:
            yield {**base, "choices": [choice]}
    usage = count(results, tally)
    if with_usage:
        yield {**base, "choices": [], "usage": usage.model_dump()}


async def chat(engine: Engine, endpoint: Endpoint, body: ChatCompletionRequest, *, default_max_tokens: int) -> Answer:
    """A chat completion; ``default_max_tokens`` when the caller sets no bound (the model's context bounds all)."""
    messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()} for m in body.messages]
    prompt = engine.encode_chat(endpoint.base_model, messages)
    requests = build_requests(
        engine,
        endpoint,
        [prompt],
        body,
        prompt_param="messages",
        max_tokens=body.max_completion_tokens or body.max_tokens or default_max_tokens,
        n_logprobs=(body.top_logprobs or 0) if body.logprobs else 0,
        stop=body.stops(),
    )
    answer = Answer(endpoint)
    completion_id, created = response_id("chatcmpl"), now()
    if body.stream:

        def choice_of(index: int, chunk: GenerationChunk, _: bool) -> dict[str, Any] | None:
            choice: dict[str, Any] = {
                "index": index,
                "delta": {"content": chunk.text} if chunk.text else {},
                "finish_reason": chunk.finish_reason,
            }
            if body.logprobs and chunk.logprobs:
                choice["logprobs"] = chat_logprobs(list(chunk.logprobs)).model_dump()
            return choice if chunk.text or chunk.finish_reason or "logprobs" in choice else None

        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": endpoint.model}
        opening = [
            {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            for i in range(len(requests))
        ]
        answer.events = _events(engine, requests, base, answer.tally, include_usage(body), choice_of, opening)
        return answer
    results = await complete_all(engine, requests)
    answer.body = ChatCompletion(
        id=completion_id,
        created=created,
        model=endpoint.model,
        choices=[
            ChatChoice(
                index=r.index,
                message=AssistantMessage(content=r.text),
                finish_reason=r.finish_reason,
                logprobs=chat_logprobs(r.logprobs) if body.logprobs else None,
            )
            for r in results
        ],
        usage=count(results, answer.tally),
    ).model_dump()
    return answer


async def completion(engine: Engine, endpoint: Endpoint, body: CompletionRequest) -> Answer:
    """A text completion; the model's own prompt format (separator, stop, leading space) applied unless opted out."""
    given = CompletionInput.of(endpoint, body)
    requests = build_requests(
        engine,
        endpoint,
        [engine.encode_text(endpoint.base_model, p) for p in given.prompts],
        body,
        prompt_param="prompt",
        max_tokens=body.max_tokens,
        n_logprobs=body.logprobs or 0,
        stop=tuple(given.stop),
    )
    answer = Answer(endpoint)
    completion_id, created = response_id("cmpl"), now()
    if body.stream:

        def choice_of(index: int, chunk: GenerationChunk, first: bool) -> dict[str, Any] | None:
            text = given.clean(chunk.text, first=first)
            if not (text or chunk.finish_reason):
                return None
            logprobs = completion_logprobs(list(chunk.logprobs)).model_dump() if body.logprobs is not None else None
            return {"index": index, "text": text, "finish_reason": chunk.finish_reason, "logprobs": logprobs}

        base = {"id": completion_id, "object": "text_completion", "created": created, "model": endpoint.model}
        answer.events = _events(engine, requests, base, answer.tally, include_usage(body), choice_of)
        return answer
    results = await complete_all(engine, requests)
    answer.body = Completion(
        id=completion_id,
        created=created,
        model=endpoint.model,
        choices=[
            CompletionChoice(
                index=r.index,
                text=given.clean(r.text, first=True),
                finish_reason=r.finish_reason,
                logprobs=completion_logprobs(r.logprobs) if body.logprobs is not None else None,
            )
            for r in results
        ],
        usage=count(results, answer.tally),
    ).model_dump()
    return answer
