"""The prompt format of prompt-completion data: read off the training file, kept with the model, applied at inference.

A model fine-tuned on ``{"prompt": "…\\n\\n###\\n\\n", "completion": " answer END"}`` answers well only when its
prompts end with the same separator, and it marks the end of an answer with the stop sequence it learnt. The job
detects both (plus the completions' leading space and, for classification, the labels) once, stores them on every
fine-tuned model it creates, and completions requests to that model apply them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.datasets.checks import SEPARATORS, STOP_SEQUENCES, Checks
from app.datasets.formats import inspect_example
from app.datasets.reader import SourceInfo, iter_jsonl
from app.datasets.schemas import Format

# OpenAI's completions API takes at most four stop sequences.
MAX_STOPS = 4
# Ending every prompt or completion with one of these is ordinary writing, not a separator or a stop marker.
_PUNCTUATION = frozenset(".,;:!?'\"…")
_LEADING_ALNUM = re.compile(r"\A[^\W_]+")


class PromptFormat(BaseModel):
    """How the training data wrote prompts and completions; stored as JSON on ``FineTunedModel.prompt_format``."""

    separator: str | None = None
    stop: str | None = None
    leading_space: bool = False
    labels: list[str] | None = None  # the classes, bare: no leading space, no stop sequence

    @classmethod
    def from_stored(cls, value: dict[str, Any] | None) -> PromptFormat | None:
        """The format a model row stores (``model_dump()`` wrote it), None when it stores none."""
        return None if value is None else cls.model_validate(value)

    def apply(self, prompt: str) -> str:
        """The prompt ending with the separator the model was trained with (added only when missing)."""
        separator = self.separator
        if not separator or prompt.endswith(separator):
            return prompt
        return prompt + separator

    def stops(self, caller: list[str] | None) -> list[str]:
        """The stop sequences to generate with: ours first, then the caller's, without repeats, at most four."""
        out: list[str] = []
        for stop in [self.stop, *(caller or [])]:
            if stop and stop not in out:
                out.append(stop)
        return out[:MAX_STOPS]

    def clean(self, text: str, *, first: bool) -> str:
        """Generated text as the caller wants it: no trailing stop, and (``first`` chunk) no learnt leading space."""
        stop = self.stop
        if stop and text.endswith(stop):
            text = text[: -len(stop)]
        if first and self.leading_space and text.startswith(" "):
            text = text[1:]
        return text


def detect_prompt_format(path: Path) -> PromptFormat | None:
    """The format of a JSONL prompt-completion file; None for chat or preference data, or when nothing is found.

    Streams the file once (synchronous: call it in a thread), looking at valid examples only, and stops at the first
    example of a file in another format.
    """
    checks = Checks()
    found: Format | None = None
    for record in iter_jsonl(path, SourceInfo("jsonl")):
        if record.blank or record.error is not None:
            continue
        ex = inspect_example(record.value, found)
        if found is None and ex.format is not None:
            if ex.format is not Format.PROMPT_COMPLETION:
                return None
            found = ex.format
        if not ex.issues:
            checks.observe(record.line, ex)
    return _infer(checks) if checks.n else None


def _infer(checks: Checks) -> PromptFormat | None:
    stop = _stop(checks.completions.common or "")
    classes = checks.classes()
    labels = None
    if classes is not None:
        bare = (_without_suffix(label, stop).strip() for label, _ in classes)
        labels = list(dict.fromkeys(label for label in bare if label)) or None
    fmt = PromptFormat(
        separator=_separator(checks.prompts.common or ""),
        stop=stop,
        leading_space=checks.no_space.count == 0,
        labels=labels,
    )
    return None if fmt == PromptFormat() else fmt


def _separator(common: str) -> str | None:
    """The separator every prompt ends with, from the suffix they all share."""
    if not common:
        return None
    known = [separator for separator in SEPARATORS if common.endswith(separator)]
    if known:
        return max(known, key=len)
    if "\n" in common:
        body = common.rstrip()
        line = body.rfind("\n")
        if line < 0:  # the newlines are all at the very end: prompts end with a line break
            return common[len(body) :]
        # From the blank lines before the last line on: a template such as "\n\nAgent:".
        return common[len(body[:line].rstrip()) :]
    token = _last_token(common)
    if token is None or not any(_is_symbol(c) for c in token[1]):
        return None  # plain words or sentence punctuation: the prompts merely end alike
    return "".join(token)


def _stop(common: str) -> str | None:
    """The stop sequence every completion ends with, from the suffix they all share; only a marker qualifies."""
    if not common:
        return None
    body = common.rstrip()
    if len(body) < len(common):
        trailing = common[len(body) :]
        return trailing if "\n" in trailing else None
    token = _last_token(common)
    if token is None:
        return None
    lead, word, _ = token
    stop = lead + word
    if stop in STOP_SEQUENCES or _is_marker(word):
        return stop
    return None


def _last_token(common: str) -> tuple[str, str, str] | None:
    """``(whitespace before, token, whitespace after)`` of the last token.

    Without whitespace before it the token may be the tail of words that merely end alike ("posit|IVE",
    "negat|IVE"), so its leading letters and digits are dropped.
    """
    body = common.rstrip()
    start = len(body)
    while start and not body[start - 1].isspace():
        start -= 1
    lead = body[start - 1] if start else ""
    word = body[start:]
    trail = common[len(body) :]
    if not lead:
        word = _LEADING_ALNUM.sub("", word)
    return (lead, word, trail) if word else None


def _is_symbol(c: str) -> bool:
    return not c.isalnum() and not c.isspace() and c not in _PUNCTUATION


def _is_marker(word: str) -> bool:
    """END, ###, **STOP**: no lowercase, two characters or more, a capital or a symbol (not "...", not "2024")."""
    return len(word) >= 2 and not any(c.islower() for c in word) and any(c.isupper() or _is_symbol(c) for c in word)


def _without_suffix(text: str, suffix: str | None) -> str:
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text
