"""Answering with an upstream provider: the caller's request passed on under the provider's model id.

Fields ftgw does not itself know (tools, response_format, …) travel through untouched. The answer comes back
with our model id in ``model``. Token usage is the provider's own count; when it sends none, tiktoken counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from app.inference.answer import Answer, CompletionInput, Tally, answer_texts, include_usage
from app.inference.schemas import ChatCompletionRequest, CompletionRequest, Sampling
from app.inference.upstream import UpstreamClient
from app.registry.routing import Endpoint
from app.tokenizers import UnknownModel, tokenizer_for_model

OURS = {"apply_prompt_format"}  # ftgw's own request fields, never sent upstream


def _payload(endpoint: Endpoint, body: Sampling) -> dict[str, Any]:
    payload = body.model_dump(exclude_unset=True, exclude=OURS)
    payload["model"] = endpoint.upstream_model
    if body.stream:
        # Ask for usage in the last chunk, to count it; the caller gets that chunk only if it asked too.
        payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
    return payload


def _take_usage(body: dict[str, Any], tally: Tally) -> bool:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return False
    tally.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    tally.completion_tokens = int(usage.get("completion_tokens") or 0)
    return True


def _count(model: str, texts: list[str]) -> int:
    """tiktoken's count with the model's encoding (cl100k_base for models tiktoken does not know)."""
    try:
        tokenizer = tokenizer_for_model(model)
    except UnknownModel:
        tokenizer = tokenizer_for_model(None)
    return sum(tokenizer.count(t) for t in texts)


def _prompt_texts(body: Sampling) -> list[str]:
    if isinstance(body, ChatCompletionRequest):
        return [m.text() for m in body.messages]
    if isinstance(body, CompletionRequest):
        return body.prompts()
    return []


async def forward(client: UpstreamClient, endpoint: Endpoint, path: str, body: Sampling) -> Answer:
    """One call to the provider (retried there); raises UpstreamFailure when the route should fall back."""
    payload = _payload(endpoint, body)
    given = CompletionInput.of(endpoint, body) if isinstance(body, CompletionRequest) else None
    if given is not None and given.format is not None:
        payload["prompt"] = given.prompts if isinstance(payload["prompt"], list) else given.prompts[0]
        payload["stop"] = given.stop
    answer = Answer(endpoint)
    if body.stream:
        events = await client.stream(path, payload)
        answer.events = _relay(events, endpoint, body, answer.tally, given)
        return answer
    result = await client.post(path, payload)
    result["model"] = endpoint.model
    if given is not None:
        for choice in result.get("choices") or []:
            choice["text"] = given.clean(str(choice.get("text") or ""), first=True)
    if not _take_usage(result, answer.tally):
        answer.tally.prompt_tokens = _count(endpoint.base_model, _prompt_texts(body))
        answer.tally.completion_tokens = _count(endpoint.base_model, answer_texts(result))
        result["usage"] = answer.tally.usage()
    answer.body = result
    return answer


async def _relay(
    events: AsyncIterator[dict[str, Any]],
    endpoint: Endpoint,
    body: Sampling,
    tally: Tally,
    given: CompletionInput | None,
) -> AsyncIterator[dict[str, Any]]:
    wants_usage = include_usage(body)
    started: set[int] = set()
    texts: list[str] = []
    counted = False
    async for event in events:
        event["model"] = endpoint.model
        if _take_usage(event, tally):
            counted = True
            if not wants_usage:
                if not event.get("choices"):
                    continue
                event.pop("usage", None)
        for choice in event.get("choices") or []:
            if given is not None and choice.get("text"):
                index = int(choice.get("index") or 0)
                choice["text"] = given.clean(choice["text"], first=index not in started)
                started.add(index)
        texts.extend(answer_texts(event))
        yield event
    if not counted:
        tally.prompt_tokens = _count(endpoint.base_model, _prompt_texts(body))
        tally.completion_tokens = _count(endpoint.base_model, ["".join(texts)])
