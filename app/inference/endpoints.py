"""/v1/chat/completions and /v1/completions: OpenAI's inference API, streaming included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from app.auth.principal import PrincipalDep
from app.db import SessionDep
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
from app.inference.service import ChoiceResult, inference_service, now, response_id
from app.providers.local.engine import Engine
from app.providers.local.engine_types import GenerationChunk, GenerationRequest
from app.providers.local.engine_types import TokenLogprob as EngineLogprob

router = APIRouter(prefix="/v1", tags=["Inference"])

STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}
}


def get_engine(request: Request) -> Engine:
    """The local engine, created on first use so a gateway that serves no local model never loads torch."""
    state = request.app.state
    if getattr(state, "inference_engine", None) is None:
        state.inference_engine = Engine(state.providers.get("local").store)
    engine: Engine = state.inference_engine
    return engine


def _usage(results: list[ChoiceResult]) -> Usage:
    prompt = sum({r.index: r.prompt_tokens for r in results}.values()) if results else 0
    completion = sum(r.completion_tokens for r in results)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _chat_logprobs(items: list[EngineLogprob]) -> ChoiceLogprobs:
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


def _completion_logprobs(items: list[EngineLogprob]) -> CompletionLogprobs:
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


def _sse(events: AsyncIterator[dict[str, Any]]) -> EventSourceResponse:
    async def encoded() -> AsyncIterator[str]:
        async for event in events:
            yield json.dumps(event, separators=(",", ":"))
        yield "[DONE]"

    return EventSourceResponse(encoded())


@router.post("/chat/completions", response_model=ChatCompletion, responses=STREAM_RESPONSE)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> ChatCompletion | EventSourceResponse:
    """Chat completion from a base or fine-tuned model (`stream: true` for server-sent events)."""
    target = await inference_service.resolve(session, request.app.state.providers, principal.project_id, body.model)
    engine = get_engine(request)
    messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()} for m in body.messages]
    prompt = engine.encode_chat(target.base_model, messages)
    requests = inference_service.requests(
        target,
        [prompt],
        body,
        max_tokens=body.max_completion_tokens or body.max_tokens or 256,
        n_logprobs=(body.top_logprobs or 0) if body.logprobs else 0,
    )
    completion_id, created = response_id("chatcmpl"), now()
    if body.stream:
        return _sse(_chat_stream(engine, requests, completion_id, created, body))
    results = await inference_service.complete(engine, requests)
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=target.model,
        choices=[
            ChatChoice(
                index=r.index,
                message=AssistantMessage(content=r.text),
                finish_reason=r.finish_reason,
                logprobs=_chat_logprobs(r.logprobs) if body.logprobs else None,
            )
            for r in results
        ],
        usage=_usage(results),
    )


ChoiceFormatter = Callable[[int, GenerationChunk], dict[str, Any] | None]


async def _stream(
    engine: Engine,
    requests: list[GenerationRequest],
    base: dict[str, Any],
    include_usage: bool,
    choice_of: ChoiceFormatter,
    opening: list[dict[str, Any]] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The chunks of every choice as they come, in ``base``'s envelope; usage last when asked for."""
    for first in opening or []:
        yield {**base, "choices": [first]}
    results = [ChoiceResult(index=i) for i in range(len(requests))]
    async for index, chunk in inference_service.stream(engine, requests):
        results[index].absorb(chunk)
        choice = choice_of(index, chunk)
        if choice is not None:
            yield {**base, "choices": [choice]}
    if include_usage:
        yield {**base, "choices": [], "usage": _usage(results).model_dump()}


def _chat_stream(
    engine: Engine, requests: list[GenerationRequest], completion_id: str, created: int, body: ChatCompletionRequest
) -> AsyncIterator[dict[str, Any]]:
    def choice_of(index: int, chunk: GenerationChunk) -> dict[str, Any] | None:
        choice: dict[str, Any] = {
            "index": index,
            "delta": {"content": chunk.text} if chunk.text else {},
            "finish_reason": chunk.finish_reason,
        }
        if body.logprobs and chunk.logprobs:
            choice["logprobs"] = _chat_logprobs(list(chunk.logprobs)).model_dump()
        return choice if chunk.text or chunk.finish_reason or "logprobs" in choice else None

    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": body.model}
    opening = [
        {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None} for i in range(len(requests))
    ]
    return _stream(engine, requests, base, _include_usage(body), choice_of, opening)


def _include_usage(body: Sampling) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


@router.post("/completions", response_model=Completion, responses=STREAM_RESPONSE)
async def completions(
    body: CompletionRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> Completion | EventSourceResponse:
    """Text completion from a base or fine-tuned model (`logprobs=N` gives the top N tokens per position)."""
    target = await inference_service.resolve(session, request.app.state.providers, principal.project_id, body.model)
    engine = get_engine(request)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    requests = inference_service.requests(
        target,
        [engine.encode_text(target.base_model, prompt) for prompt in prompts],
        body,
        max_tokens=body.max_tokens,
        n_logprobs=body.logprobs or 0,
    )
    completion_id, created = response_id("cmpl"), now()
    if body.stream:
        return _sse(_completion_stream(engine, requests, completion_id, created, body))
    results = await inference_service.complete(engine, requests)
    return Completion(
        id=completion_id,
        created=created,
        model=target.model,
        choices=[
            CompletionChoice(
                index=r.index,
                text=r.text,
                finish_reason=r.finish_reason,
                logprobs=_completion_logprobs(r.logprobs) if body.logprobs is not None else None,
            )
            for r in results
        ],
        usage=_usage(results),
    )


def _completion_stream(
    engine: Engine, requests: list[GenerationRequest], completion_id: str, created: int, body: CompletionRequest
) -> AsyncIterator[dict[str, Any]]:
    def choice_of(index: int, chunk: GenerationChunk) -> dict[str, Any] | None:
        if not (chunk.text or chunk.finish_reason):
            return None
        logprobs = _completion_logprobs(list(chunk.logprobs)).model_dump() if body.logprobs is not None else None
        return {"index": index, "text": chunk.text, "finish_reason": chunk.finish_reason, "logprobs": logprobs}

    base = {"id": completion_id, "object": "text_completion", "created": created, "model": body.model}
    return _stream(engine, requests, base, _include_usage(body), choice_of)
