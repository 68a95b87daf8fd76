"""What serving a request produces, whoever served it: a whole response or a stream of chunks, and its usage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

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


def response_id(prefix: str) -> str:
    return f"{prefix}-{random_token(24)}"


def now() -> int:
    return int(time.time())
