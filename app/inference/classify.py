"""Classification from a fine-tuned classifier's logprobs: the probability of each label for the next token.

The classifier was trained on prompt-completion data whose completions are labels (OpenAI's sentiment and
"yes"/"no" discriminator examples). One token is generated greedily with the top logprobs; every candidate token
that begins a label adds its probability to that label, and the labels' shares are normalised to sum to 1.
``coverage`` says how much of the model's probability mass the labels got (low means the model is unsure or the
labels do not match its training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.errors import InvalidRequest
from app.inference.backends import Backend
from app.registry.routing import Endpoint


@dataclass(frozen=True, slots=True)
class Verdict:
    label: str | None
    probabilities: dict[str, float]
    coverage: float
    prompt_tokens: int


def labels_for(endpoint: Endpoint, labels: list[str] | None) -> list[str]:
    found = labels or (endpoint.prompt_format.labels if endpoint.prompt_format else None)
    if not found:
        raise InvalidRequest(
            f"No labels were given and '{endpoint.model}' was not trained on labelled data; pass `labels`.",
            param="labels",
        )
    return found


def verdict(top: dict[str, float], labels: list[str], prompt_tokens: int) -> Verdict:
    """Label probabilities from one position's top tokens (token text -> logprob)."""
    mass = dict.fromkeys(labels, 0.0)
    wanted = {label: label.strip().lower() for label in labels}
    for token, logprob in top.items():
        piece = token.strip().lower()
        if not piece:
            continue
        for label, norm in wanted.items():
            if norm.startswith(piece):
                mass[label] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return Verdict(None, dict.fromkeys(labels, 0.0), 0.0, prompt_tokens)
    probabilities = {label: value / total for label, value in mass.items()}
    best = max(probabilities, key=lambda k: probabilities[k])
    return Verdict(best, probabilities, min(total, 1.0), prompt_tokens)


async def classify(backend: Backend, endpoint: Endpoint, text: str, labels: list[str]) -> Verdict:
    fmt = endpoint.prompt_format
    prompt = fmt.apply(text) if fmt is not None else text
    first = await backend.first_token(endpoint, prompt)
    return verdict(first.top, labels, first.prompt_tokens)
