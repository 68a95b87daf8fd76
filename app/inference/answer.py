"""What serving a request produces, whoever served it: a whole response or a stream of chunks, and its usage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from app.datasets.prompt_format import PromptFormat
from app.inference.schemas import CompletionRequest, Sampling
from app.kit.ids import random_token
from app.registry.routing import Endpoint


@dataclass(slots=True)
class Tally:
    """Token counts of one request, filled in as it is answered (a stream fills it as it ends)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass(slots=True)
class Answer:
    endpoint: Endpoint  # the model that answered
    body: dict[str, Any] | None = None  # a whole response
    events: AsyncIterator[dict[str, Any]] | None = None  # or a stream of chunks
    tally: Tally = field(default_factory=Tally)
    guard: str | None = None  # "passed" or "refused" when a guard ran


@dataclass(frozen=True, slots=True)
class CompletionInput:
    """A text completion's prompts and stops as sent to the model: its prompt format applied unless opted out."""

    prompts: list[str]
    stop: list[str]
    format: PromptFormat | None

    @classmethod
    def of(cls, endpoint: Endpoint, body: CompletionRequest) -> CompletionInput:
        fmt = endpoint.prompt_format if body.apply_prompt_format else None
        if fmt is None:
            return cls(body.prompts(), list(body.stops()), None)
        return cls([fmt.apply(p) for p in body.prompts()], fmt.stops(list(body.stops())), fmt)

    def clean(self, text: str, *, first: bool) -> str:
        """Generated text without the format's stop and learnt leading space (``first``: the choice's start)."""
        return self.format.clean(text, first=first) if self.format is not None and text else text


def response_id(prefix: str) -> str:
    return f"{prefix}-{random_token(24)}"


def now() -> int:
    return int(time.time())


def include_usage(body: Sampling) -> bool:
    """Whether a streamed answer ends with a usage chunk: the caller asked for it."""
    return bool(body.stream_options and body.stream_options.include_usage)


def answer_texts(body: dict[str, Any]) -> list[str]:
    """The text of each choice of a whole answer or of one chunk of a stream."""
    texts = []
    for choice in body.get("choices") or []:
        message = choice.get("message") or choice.get("delta") or {}
        texts.append(str(choice.get("text") or message.get("content") or ""))
    return texts
