"""Per-sequence decoding: adjusting the logits, picking the next token, its logprobs, and turning tokens into
safe-to-send text."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import torch

from app.providers.local.engine._types import GREEDY_BELOW, GenerationRequest, TokenLogprob, TopLogprob

REPLACEMENT = "\ufffd"


def adjusted(logits: torch.Tensor, request: GenerationRequest, counts: Counter[int]) -> torch.Tensor:
    """``logits`` after OpenAI's penalties on the tokens generated so far (``counts``) and the request's
    ``logit_bias``; the same tensor when the request changes nothing. A bias on a token id beyond the model's
    logits raises ``IndexError``."""
    penalised = counts and (request.frequency_penalty or request.presence_penalty)
    if not (penalised or request.logit_bias):
        return logits
    out = logits.float().clone()
    if penalised:
        ids = torch.tensor(list(counts), dtype=torch.long)
        seen = torch.tensor(list(counts.values()), dtype=out.dtype)
        out.index_add_(0, ids, -(seen * request.frequency_penalty + request.presence_penalty))
    if request.logit_bias:
        ids = torch.tensor([token for token, _ in request.logit_bias], dtype=torch.long)
        bias = torch.tensor([value for _, value in request.logit_bias], dtype=out.dtype)
        out.index_add_(0, ids, bias)
    return out


def pick_token(logits: torch.Tensor, *, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Greedy below :data:`GREEDY_BELOW` (or at ``top_p`` 0), else nucleus sampling from ``generator``.

    Safe for any finite temperature: the logits are shifted so the largest is 0 before dividing, in float64, so
    every quotient is at most 0 and ``exp`` can only underflow to 0, never overflow to inf (and inf/inf to NaN).
    """
    if temperature < GREEDY_BELOW or top_p == 0:
        return int(logits.argmax())
    top = logits.max()
    if not torch.isfinite(top):
        raise ValueError(f"the model's logits are not finite (max {float(top)})")
    probs = torch.softmax((logits.double() - top.double()) / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p: a token stays if the mass before it is below top_p
        # (the most likely token always stays).
        keep = (sorted_probs.cumsum(-1) - sorted_probs) < top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class TopLogprobs:
    """The logprobs of a batch's rows that ask for them (``counts[i]`` most likely tokens for row ``i``; 0: none),
    under the unscaled distribution, computed for all those rows at once: one softmax and one top-k for the batch,
    not one each."""

    def __init__(self, logits: torch.Tensor, counts: list[int]) -> None:
        self._counts = counts
        wanted = [i for i, n in enumerate(counts) if n]
        self._at = {row: j for j, row in enumerate(wanted)}
        if not wanted:
            return
        rows = logits if len(wanted) == len(counts) else logits[wanted]
        self._logprobs = torch.log_softmax(rows.float(), dim=-1)
        values, ids = self._logprobs.topk(max(counts[i] for i in wanted))
        self._values, self._ids = values.tolist(), ids.tolist()

    def row(self, i: int) -> RowLogprobs | None:
        """Row ``i``'s distribution, or None when it asked for no logprobs."""
        j = self._at.get(i)
        if j is None:
            return None
        n = self._counts[i]
        return RowLogprobs(self._logprobs[j], self._values[j][:n], self._ids[j][:n])


class RowLogprobs:
    """One row's log-distribution and its most likely tokens (ids and logprobs, most likely first)."""

    def __init__(self, logprobs: torch.Tensor, values: list[float], ids: list[int]) -> None:
        self._logprobs, self._values, self._ids = logprobs, values, ids

    def of(self, token_id: int, text_of: Any) -> TokenLogprob:
        """The chosen token's logprob, with the row's most likely tokens; ``text_of(id)`` gives a token's text."""
        top = tuple(TopLogprob(i, text_of(i), v) for v, i in zip(self._values, self._ids, strict=True))
        return TokenLogprob(token_id, text_of(token_id), float(self._logprobs[token_id]), top)


class TextState:
    """The generated tokens of one sequence and how much of their text has been sent.

    Decodes the whole completion each step (a few hundred tokens at most: microseconds) rather than per token,
    because a byte-level BPE token can be half a UTF-8 character that only the next token completes.
    """

    def __init__(self, tokenizer: Any, lock: threading.Lock, stop: tuple[str, ...]) -> None:
        self._tokenizer = tokenizer
        self._lock = lock
        self._stop = stop
        self.ids: list[int] = []
        self._sent = 0

    def decode(self, ids: list[int]) -> str:
        with self._lock:
            return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add a token; returns (text now safe to send, whether a stop string ended the sequence)."""
        self.ids.append(token_id)
        text = self.decode(self.ids)
        found = (text.find(s, max(0, self._sent - len(s) + 1)) for s in self._stop)
        cut = min((i for i in found if i >= 0), default=-1)
        if cut >= 0:
            return self._take(text, max(cut, self._sent)), True
        end = len(text.rstrip(REPLACEMENT))
        end -= self._stop_prefix_length(text[self._sent : end])
        return self._take(text, end), False

    def flush(self) -> str:
        """Everything not sent yet: the sequence ended without a stop string."""
        return self._take(self.decode(self.ids), None)

    def _take(self, text: str, end: int | None) -> str:
        end = len(text) if end is None else end
        piece = text[self._sent : end] if end > self._sent else ""
        self._sent = max(self._sent, end)
        return piece

    def _stop_prefix_length(self, pending: str) -> int:
        # The longest tail of the unsent text that some stop string starts with: it may still become that stop.
        for k in range(min(len(pending), max((len(s) for s in self._stop), default=1) - 1), 0, -1):
            tail = pending[-k:]
            if any(s.startswith(tail) for s in self._stop):
                return k
        return 0
