"""The engine's wire types: what a caller asks for (:class:`GenerationRequest`) and what it streams back.

Plain frozen dataclasses, not pydantic: the serving layer validates user input into its own schemas first and
builds these afterwards, and chunks are created once per token on the hot path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

FinishReason = Literal["stop", "length"]
MAX_LOGPROBS = 20
# Below this temperature sampling is greedy decoding (vLLM's _SAMPLING_EPS): dividing logits by a temperature
# near zero only sharpens the distribution towards its argmax, and by a tiny enough one overflows.
GREEDY_BELOW = 1e-5
MAX_PENALTY = 2.0  # OpenAI's bound on frequency and presence penalties
MAX_LOGIT_BIAS = 100.0


class GenerationFailed(RuntimeError):
    """This sequence failed inside the engine (its sampling or its forward pass); the others of its batch go on."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One completion to generate: already-encoded prompt tokens (see ``Engine.encode_chat``/``encode_text``).

    A temperature below :data:`GREEDY_BELOW` is greedy decoding; ``seed`` (any int) makes sampling reproducible
    per request, whatever else shares the batch. ``frequency_penalty``, ``presence_penalty`` and ``logit_bias``
    (token id, bias) change the logits as OpenAI documents, before the pick, greedy or not. ``n_logprobs`` is
    OpenAI's completions ``logprobs=N``: the chosen token's logprob and the N most likely alternatives at each
    position, under the model's own distribution.
    """

    model: str
    prompt_ids: tuple[int, ...]
    adapter: Path | None = None
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n_logprobs: int = 0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        # Fail at the caller (a 4xx upstream), not inside the worker thread where it would abort a whole batch.
        if not self.prompt_ids:
            raise ValueError("prompt_ids must not be empty")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError("temperature must be finite and not negative")
        if not 0 <= self.top_p <= 1:
            raise ValueError("top_p must be in [0, 1]")
        if not all(-MAX_PENALTY <= p <= MAX_PENALTY for p in (self.frequency_penalty, self.presence_penalty)):
            raise ValueError(f"penalties must be in [-{MAX_PENALTY}, {MAX_PENALTY}]")
        if not all(-MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS for _, bias in self.logit_bias):
            raise ValueError(f"logit_bias values must be in [-{MAX_LOGIT_BIAS}, {MAX_LOGIT_BIAS}]")
        if any(token < 0 for token, _ in self.logit_bias):
            raise ValueError("logit_bias keys must be token ids (not negative)")
        if not 0 <= self.n_logprobs <= MAX_LOGPROBS:
            raise ValueError(f"n_logprobs must be in 0..{MAX_LOGPROBS}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW or self.top_p == 0

    @property
    def adjusts_logits(self) -> bool:
        """Whether the logits change before the pick (then the batch's shared argmax is not this row's)."""
        return bool(self.logit_bias) or self.frequency_penalty != 0 or self.presence_penalty != 0


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One candidate token at a position."""

    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """The chosen token's logprob (under the model's unscaled distribution) and the top alternatives."""

    token_id: int
    token: str
    logprob: float
    top: tuple[TopLogprob, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, as OpenAI bills them."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class GenerationChunk:
    """What one decode step added to a sequence; the last chunk has ``finish_reason`` and ``usage``.

    ``text`` may be empty while ``token_ids`` is not: text is held back while it ends in an incomplete UTF-8
    character or could still turn into a stop string.
    """

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[TokenLogprob, ...] = field(default=())
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


class Traffic(Protocol):
    """The server's word on the calls it is serving, read from the engine's thread to decide how long a request
    that wakes it waits for the rest of its burst."""

    def routing(self) -> int:
        """How many calls the server has accepted and not yet handed to a backend: calls on their way."""
        ...
