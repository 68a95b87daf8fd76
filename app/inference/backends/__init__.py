"""The seam between the inference gateway and whatever generates the tokens.

The gateway (``app.inference.gateway``) routes a request to an :class:`~app.registry.routing.Endpoint` and asks
the :class:`Backend` that endpoint names to answer it. It never learns which kind of backend that was: the local
engine, an upstream OpenAI-compatible provider or a fleet of vLLM replicas all answer through this interface,
much as vLLM's serving layer depends only on its ``EngineClient`` protocol and httpx on its transport.

Backends are named: the local engine is ``local``, an upstream provider's backend takes the provider's name, a
vLLM fleet the name its settings give it. :class:`Backends` holds them and says which one serves a model: the
provider that trained it, unless a vLLM fleet serves that provider's base model (then the fleet does).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from app.errors import GatewayError
from app.inference.answer import Answer
from app.inference.schemas import ChatCompletionRequest, CompletionRequest
from app.observability.metrics import EngineLoad
from app.registry.routing import Endpoint


@dataclass(frozen=True, slots=True)
class FirstToken:
    """The model's distribution over the token that follows a prompt: its most likely tokens' logprobs."""

    top: dict[str, float]  # token text -> logprob
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    detail: str = ""


class Backend(Protocol):
    """Something that answers chat and text completions for the endpoints routed to it."""

    @property
    def name(self) -> str: ...

    async def chat(self, endpoint: Endpoint, body: ChatCompletionRequest) -> Answer:
        """A chat completion: ``Answer.body`` whole, or ``Answer.events`` when ``body.stream``.

        Raises ``UpstreamFailure`` when the request should fall back to the next candidate, an ``ApiError`` when
        the caller's request is wrong."""
        ...

    async def completion(self, endpoint: Endpoint, body: CompletionRequest) -> Answer:
        """A text completion (the endpoint's prompt format applied unless opted out), whole or streamed."""
        ...

    async def first_token(self, endpoint: Endpoint, prompt: str) -> FirstToken:
        """The top logprobs of the first token after ``prompt`` (sent as is), without generating further."""
        ...

    async def warm(self, endpoint: Endpoint) -> None:
        """Get ready to answer for ``endpoint`` soon (load its model or adapter); best effort."""
        ...

    async def forget(self, endpoint: Endpoint) -> None:
        """``endpoint``'s model was deleted: free what was loaded for it."""
        ...

    async def health(self) -> Health: ...

    def load(self) -> EngineLoad | None:
        """What this process's own engine is doing, where it has one (None for remote backends)."""
        ...

    async def aclose(self) -> None: ...


class Backends:
    """Every configured backend, by name, and which one serves the models of each provider's base models."""

    def __init__(self, backends: list[Backend], serving: dict[tuple[str, str], str] | None = None) -> None:
        self._backends = {b.name: b for b in backends}
        self._serving = serving or {}  # (provider, base model) -> backend, where it is not the provider's own

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends.values())

    def get(self, name: str) -> Backend:
        backend = self._backends.get(name)
        if backend is None:
            raise GatewayError(f"No backend named '{name}' is configured.", code="provider_not_configured")
        return backend

    def serving(self, provider: str, base_model: str) -> str:
        """The backend that answers for a model ``provider`` trained (or offers) on ``base_model``."""
        return self._serving.get((provider, base_model), provider)

    def load(self) -> EngineLoad | None:
        loads = [load for b in self._backends.values() if (load := b.load()) is not None]
        if not loads:
            return None
        return EngineLoad(sum(x.running for x in loads), sum(x.waiting for x in loads))

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
