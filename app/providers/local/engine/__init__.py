"""The local serving engine: continuous batching of many requests over local base models and their LoRA adapters.

Its public face is :class:`Engine` and the request and chunk types it speaks; the rest of this package is private.
The inference gateway reaches it only through its backend (``app.inference.backends.local``).

``Engine`` is imported on first use (PEP 562): it brings torch, and a process that serves no local model never
needs it, while the request types here are cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.providers.local.engine._types import (
    MAX_LOGPROBS,
    GenerationChunk,
    GenerationFailed,
    GenerationRequest,
    TokenLogprob,
    TopLogprob,
    Traffic,
    Usage,
)

if TYPE_CHECKING:
    from app.providers.local.engine._engine import Engine, EngineClosed

__all__ = [
    "MAX_LOGPROBS",
    "Engine",
    "EngineClosed",
    "GenerationChunk",
    "GenerationFailed",
    "GenerationRequest",
    "TokenLogprob",
    "TopLogprob",
    "Traffic",
    "Usage",
]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "EngineClosed"):
        from app.providers.local.engine import _engine

        return getattr(_engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
