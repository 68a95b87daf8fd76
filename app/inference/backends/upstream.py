"""The upstream backend: an OpenAI-compatible provider, called over HTTP (``app.inference.upstream``)."""

from __future__ import annotations

from app.inference import remote
from app.inference.answer import Answer
from app.inference.backends import FirstToken, Health
from app.inference.schemas import ChatCompletionRequest, CompletionRequest
from app.inference.upstream import UpstreamClient
from app.observability.metrics import EngineLoad
from app.registry.routing import Endpoint

UPSTREAM_LOGPROBS = 5  # OpenAI's completions cap


async def first_token(client: UpstreamClient, model: str, prompt: str, logprobs: int) -> FirstToken:
    """The first token's top logprobs from an OpenAI-compatible ``/completions``."""
    body = await client.post(
        "/completions", {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": logprobs}
    )
    choices = body.get("choices") or [{}]
    tops = (choices[0].get("logprobs") or {}).get("top_logprobs") or [{}]
    usage = body.get("usage") or {}
    return FirstToken(dict(tops[0] or {}), int(usage.get("prompt_tokens") or 0))


class UpstreamBackend:
    def __init__(self, client: UpstreamClient) -> None:
        self.name = client.name
        self.client = client

    async def chat(self, endpoint: Endpoint, body: ChatCompletionRequest) -> Answer:
        return await remote.forward(self.client, endpoint, "/chat/completions", body)

    async def completion(self, endpoint: Endpoint, body: CompletionRequest) -> Answer:
        return await remote.forward(self.client, endpoint, "/completions", body)

    async def first_token(self, endpoint: Endpoint, prompt: str) -> FirstToken:
        return await first_token(self.client, endpoint.upstream_model or endpoint.model, prompt, UPSTREAM_LOGPROBS)

    async def warm(self, endpoint: Endpoint) -> None:
        return None

    async def forget(self, endpoint: Endpoint) -> None:
        return None

    async def health(self) -> Health:
        if self.client.cooling:
            return Health(False, "cooling down after repeated failures")
        return Health(True)

    def load(self) -> EngineLoad | None:
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
