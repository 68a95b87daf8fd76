"""Distillation: when a job's training data is gone upstream (or to match what its model actually serves), a prompt
set is answered by the upstream fine-tuned model and those answers become the training data.

Answers are appended to a work file as they arrive, one JSON line per prompt, so a migration that stops half-way
(the upstream went away, the worker died) asks only the prompts still unanswered when it resumes. Calls go out
``concurrency`` at a time; the SDK retries what may pass on a second try. A prompt the upstream refuses (a 4xx) is
counted and left out; an upstream that stops answering stops the migration (:class:`UpstreamUnavailable`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.datasets.reader import SourceInfo, iter_jsonl
from app.migration.schemas import DistilOptions
from app.migration.upstream import UpstreamGone, UpstreamRefused, UpstreamSource

_ROLES = frozenset({"system", "developer", "user", "assistant"})

Kind = Literal["chat", "prompt"]


@dataclass(frozen=True, slots=True)
class Prompt:
    kind: Kind
    messages: list[dict[str, str]]  # what is sent (a "prompt" row is one user message)


class NoPrompts(Exception):
    """The prompt set gives no prompt (the message says why)."""


def read_prompts(path: Path, limit: int) -> list[Prompt]:
    """The first ``limit`` prompts of a JSONL file: ``{"messages": [...]}`` (a final assistant answer is dropped)
    or ``{"prompt": "..."}``; other lines are skipped. Synchronous: call it in a thread."""
    prompts: list[Prompt] = []
    for record in iter_jsonl(path, SourceInfo("jsonl")):
        if len(prompts) >= limit:
            break
        value = record.value
        if record.blank or record.error is not None or not isinstance(value, Mapping):
            continue
        prompt = _prompt(value)
        if prompt is not None:
            prompts.append(prompt)
    if not prompts:
        raise NoPrompts("the prompt set has no usable line: each needs {'messages': [...]} or {'prompt': '...'}")
    return prompts


def _prompt(value: Mapping[str, Any]) -> Prompt | None:
    if isinstance(value.get("prompt"), str) and value["prompt"].strip():
        return Prompt("prompt", [{"role": "user", "content": value["prompt"]}])
    raw = value.get("messages")
    if not isinstance(raw, list):
        return None
    messages = []
    for message in raw:
        if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
            return None
        content = message.get("content")
        if not isinstance(content, str):
            return None
        messages.append({"role": str(message["role"]), "content": content})
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    return Prompt("chat", messages) if messages else None


def answered(work_file: Path) -> dict[int, str | None]:
    """The prompts answered (their text) or refused (None) so far."""
    done: dict[int, str | None] = {}
    if not work_file.exists():
        return done
    with work_file.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short when the process stopped: that prompt is asked again
            done[int(row["i"])] = row.get("answer")
    return done


async def answer_all(
    source: UpstreamSource, model: str, prompts: list[Prompt], options: DistilOptions, work_file: Path
) -> dict[int, str | None]:
    """Every prompt's answer (None: refused), asking only those the work file does not hold yet."""
    done = await asyncio.to_thread(answered, work_file)
    pending = [i for i in range(len(prompts)) if i not in done]
    slots = asyncio.Semaphore(options.concurrency)
    work_file.parent.mkdir(parents=True, exist_ok=True)
    lock = asyncio.Lock()

    async def ask(i: int) -> None:
        async with slots:
            prompt = prompts[i]
            try:
                if prompt.kind == "prompt":  # asked as it was trained: a completion of the prompt
                    answer: str | None = await source.complete(
                        model,
                        prompt.messages[0]["content"],
                        max_tokens=options.max_tokens,
                        temperature=options.temperature,
                    )
                else:
                    answer = await source.answer(
                        model, prompt.messages, max_tokens=options.max_tokens, temperature=options.temperature
                    )
            except (UpstreamRefused, UpstreamGone):  # this prompt refused, or the model gone: no answer
                answer = None
        async with lock:
            with work_file.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"i": i, "answer": answer}, ensure_ascii=False) + "\n")
            done[i] = answer

    # gather, not a TaskGroup: the first upstream failure is raised as itself (the migration stops, resumable),
    # not inside an ExceptionGroup; the calls still in flight are cancelled.
    tasks = [asyncio.create_task(ask(i)) for i in pending]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return done


def record(work_file: Path, answers: Mapping[int, str | None]) -> None:
    """Append ``answers`` to the work file (synchronous: call it in a thread)."""
    work_file.parent.mkdir(parents=True, exist_ok=True)
    with work_file.open("a", encoding="utf-8") as f:
        for i, answer in answers.items():
            f.write(json.dumps({"i": i, "answer": answer}, ensure_ascii=False) + "\n")


CHAT_URL, COMPLETIONS_URL = "/v1/chat/completions", "/v1/completions"


def batch_requests(
    model: str, prompts: list[Prompt], pending: list[int], options: DistilOptions
) -> tuple[str, list[tuple[str, dict[str, Any]]]] | None:
    """``(endpoint, [(custom_id, body)])`` asking the ``pending`` prompts in one upstream batch; None when they mix
    chat and prompt rows (a batch has one endpoint)."""
    kinds = {prompts[i].kind for i in pending}
    if len(kinds) != 1:
        return None
    sampling = {"model": model, "max_tokens": options.max_tokens, "temperature": options.temperature}
    if kinds == {"prompt"}:
        return COMPLETIONS_URL, [(f"p{i}", {**sampling, "prompt": prompts[i].messages[0]["content"]}) for i in pending]
    return CHAT_URL, [(f"p{i}", {**sampling, "messages": prompts[i].messages}) for i in pending]


def batch_answers(lines: list[dict[str, Any]]) -> dict[int, str | None]:
    """Answers by prompt index from a batch's output or error file lines (a failed request: None)."""
    found: dict[int, str | None] = {}
    for line in lines:
        custom_id = str(line.get("custom_id") or "")
        if not custom_id.startswith("p") or not custom_id[1:].isdigit():
            continue
        response = line.get("response") or {}
        body = response.get("body") or {}
        choices = body.get("choices") or [] if response.get("status_code") == 200 else []
        first = choices[0] if choices else {}
        text = first.get("text") if "text" in first else (first.get("message") or {}).get("content")
        found[int(custom_id[1:])] = text if isinstance(text, str) else None
    return found


def _held_out(i: int, seed: str, share: float) -> bool:
    """A stable split: the same prompt lands on the same side on every resume."""
    digest = hashlib.blake2b(f"{seed}\0{i}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64 < share


def rows(
    prompts: list[Prompt], answers: Mapping[int, str | None], *, seed: str, holdout: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(training rows, held-out rows)`` in the fine-tuning format of the prompts (chat, or prompt-completion)."""
    train: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for i, prompt in enumerate(prompts):
        answer = answers.get(i)
        if answer is None or not answer.strip():
            continue
        if prompt.kind == "prompt":
            row: dict[str, Any] = {"prompt": prompt.messages[0]["content"], "completion": answer}
        else:
            row = {"messages": [*prompt.messages, {"role": "assistant", "content": answer}]}
        (held if _held_out(i, seed, holdout) else train).append(row)
    return train, held


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
