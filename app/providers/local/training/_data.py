"""Training files into token sequences: which tokens the model sees and which ones the loss is computed on.

* prompt-completion: ``prompt`` then ``completion`` then EOS, tokenized as raw text (no chat template) so the
  model learns the file's exact separator and stop sequence; the loss covers the completion and EOS.
* chat: the tokenizer's chat template; the loss covers each assistant message (its content and the end-of-turn
  token), except those with ``"weight": 0``. As at OpenAI, every assistant message trains unless weighted 0.
* preference (DPO): the conversation rendered up to the assistant's turn, then each of the two answers.

Prompt and completion are tokenized separately (not as one string) because that is what inference sees: the
prompt alone, then the generated tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from app.datasets.formats import detect_format
from app.datasets.schemas import Format
from app.providers.local.hf import render_chat, render_prompt

IGNORE = -100


class TrainingDataError(ValueError):
    """A line of a training or validation file cannot be trained on (the file was meant to be validated)."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path.name} line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class TokenSequence:
    """One token sequence; ``labels[i]`` is ``input_ids[i]`` where the loss covers it, else :data:`IGNORE`.

    ``label`` is the trained answer's text (completion, last trained assistant message) for classification;
    ``prompt_length`` is the number of leading tokens before that answer.
    """

    input_ids: list[int]
    labels: list[int]
    label: str | None = None
    prompt_length: int = 0

    @property
    def n_targets(self) -> int:
        return sum(1 for t in self.labels[1:] if t != IGNORE)


@dataclass(frozen=True, slots=True)
class PreferencePair:
    """A DPO example: the shared prompt, then the preferred and the non-preferred answer (with end-of-turn)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]

    def sequences(self) -> tuple[TokenSequence, TokenSequence]:
        masked = [IGNORE] * len(self.prompt_ids)
        return (
            TokenSequence(self.prompt_ids + self.chosen_ids, masked + self.chosen_ids, None, len(self.prompt_ids)),
            TokenSequence(self.prompt_ids + self.rejected_ids, masked + self.rejected_ids, None, len(self.prompt_ids)),
        )

    @property
    def n_tokens(self) -> int:
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line."""
    records: list[tuple[int, dict[str, Any]]] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise TrainingDataError(path, number, f"not JSON ({exc})") from None
            if not isinstance(value, dict):
                raise TrainingDataError(path, number, "not a JSON object")
            records.append((number, value))
    if not records:
        raise TrainingDataError(path, 0, "the file has no examples")
    return records


def file_format(path: Path) -> Format:
    """The format of a file's first example."""
    number, first = read_jsonl(path)[0]
    found = detect_format(first)
    if found is None:
        raise TrainingDataError(path, number, "no messages, prompt/completion or input key")
    return found


def _eos_id(tokenizer: Any) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token")
    return int(eos)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompt_completion(tokenizer: Any, prompt: str, completion: str) -> TokenSequence:
    """Raw prompt tokens (masked), then completion tokens and EOS (trained)."""
    prompt_ids = _ids(tokenizer, prompt)
    completion_ids = [*_ids(tokenizer, completion), _eos_id(tokenizer)]
    return TokenSequence(
        prompt_ids + completion_ids,
        [IGNORE] * len(prompt_ids) + completion_ids,
        label=completion,
        prompt_length=len(prompt_ids),
    )


def encode_chat(tokenizer: Any, messages: list[dict[str, Any]]) -> TokenSequence:
    """The chat template's tokens; labels on each assistant message whose weight is not 0.

    Each assistant turn's span is found by rendering the conversation up to it (with the generation prompt) and
    through it: the template must render a prefix of the conversation as a prefix of the whole, which holds for
    ordinary role/content templates. The span ends after the end-of-turn token; the newline after it is left
    untrained because inference stops at that token.
    """
    full = render_chat(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    last_label: str | None = None
    last_start = 0
    for index, message in enumerate(messages):
        if message.get("role") != "assistant" or message.get("weight", 1) == 0:
            continue
        start = len(render_chat(tokenizer, messages[:index], generation_prompt=True))
        through = render_chat(tokenizer, messages[: index + 1], generation_prompt=False)
        if not full.startswith(through):
            raise ValueError("the chat template does not render conversations prefix-consistently")
        end = len(through.rstrip())
        spans.append((start, end))
        last_label = str(message.get("content") or "")
        last_start = start
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoded["input_ids"])
    labels = [IGNORE] * len(input_ids)
    prompt_length = len(input_ids)
    for i, (char_start, char_end) in enumerate(encoded["offset_mapping"]):
        if char_end <= char_start:
            continue
        if spans and char_start >= last_start and prompt_length == len(input_ids):
            prompt_length = i
        if any(start <= char_start < end for start, end in spans):
            labels[i] = input_ids[i]
    return TokenSequence(input_ids, labels, label=last_label, prompt_length=prompt_length)


def encode_preference(tokenizer: Any, value: dict[str, Any]) -> PreferencePair:
    """The prompt rendered with the generation prompt, each answer as its content plus end-of-turn."""
    messages = value["input"]["messages"]
    prompt = render_prompt(tokenizer, messages)
    prompt_ids = _ids(tokenizer, prompt)

    def answer(outputs: list[dict[str, Any]]) -> list[int]:
        # The end-of-turn is what the template writes after the content; rendering one turn finds it.
        whole = render_chat(tokenizer, [*messages, outputs[0]], generation_prompt=False)
        return _ids(tokenizer, whole[len(prompt) :].rstrip())

    return PreferencePair(prompt_ids, answer(value["preferred_output"]), answer(value["non_preferred_output"]))


def _truncate(seq: TokenSequence, limit: int) -> TokenSequence:
    if len(seq.input_ids) <= limit:
        return seq
    return TokenSequence(seq.input_ids[:limit], seq.labels[:limit], seq.label, min(seq.prompt_length, limit))


def load_supervised(path: Path, tokenizer: Any, max_tokens: int) -> tuple[list[TokenSequence], int]:
    """Every example of a chat or prompt-completion file; also how many were truncated to ``max_tokens``."""
    sequences: list[TokenSequence] = []
    truncated = 0
    for number, value in read_jsonl(path):
        fmt = detect_format(value)
        try:
            if fmt is Format.CHAT:
                seq = encode_chat(tokenizer, value["messages"])
            elif fmt is Format.PROMPT_COMPLETION:
                seq = encode_prompt_completion(tokenizer, str(value["prompt"]), str(value["completion"]))
            else:
                raise TrainingDataError(path, number, f"a {fmt} example cannot be trained with supervised")
        except (KeyError, TypeError, AttributeError) as exc:
            raise TrainingDataError(path, number, f"malformed example ({exc!r})") from None
        if len(seq.input_ids) > max_tokens:
            truncated += 1
            seq = _truncate(seq, max_tokens)
        if seq.n_targets == 0:
            raise TrainingDataError(path, number, "nothing to train on (no trained assistant message?)")
        sequences.append(seq)
    return sequences, truncated


def load_preferences(path: Path, tokenizer: Any, max_tokens: int) -> tuple[list[PreferencePair], int]:
    """Every pair of a preference file; answers are cut so prompt + answer fits ``max_tokens``."""
    pairs: list[PreferencePair] = []
    truncated = 0
    for number, value in read_jsonl(path):
        if detect_format(value) is not Format.PREFERENCE:
            raise TrainingDataError(path, number, "dpo needs preference examples (input, preferred_output, ...)")
        try:
            pair = encode_preference(tokenizer, value)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise TrainingDataError(path, number, f"malformed example ({exc!r})") from None
        room = max_tokens - len(pair.prompt_ids)
        if room < 1:
            raise TrainingDataError(path, number, f"the prompt alone is longer than {max_tokens} tokens")
        if len(pair.chosen_ids) > room or len(pair.rejected_ids) > room:
            truncated += 1
            pair = PreferencePair(pair.prompt_ids, pair.chosen_ids[:room], pair.rejected_ids[:room])
        pairs.append(pair)
    return pairs, truncated
