"""The eval a fine-tuning job ends with: its validation file made into eval rows, graded as its data asks, sampled
from the model the job started from ("base") and from the fine-tuned model alike.

What each kind of data is graded with:

- **classification** (prompt-completion data whose completions are a few labels: the training data's prompt format
  found labels, or the job computes classification metrics): ``string_check`` ``eq`` of the answer against the
  label, the seed's ``classification/accuracy``;
- **generation** (any other prompt-completion data) and **chat** data: ``text_similarity`` ``rouge_l`` of the answer
  against the reference (the completion, or the last assistant message), passing at 0.5. ROUGE-L's F-measure reads
  words in order, ignoring case and punctuation: 0.5 asks for about half the reference's words, in its order,
  without as many again of others. A looser metric (``fuzzy_match``, characters) passes answers that merely look
  alike; a stricter one (``eq``) fails every paraphrase.

Rows are ``{"prompt", "reference"}`` (asked as the only user message) or ``{"messages", "reference"}`` (every message
but the last assistant one, asked as they are). A reference is written as the fine-tuned model answers: without its
prompt format's stop sequence and learnt leading space, so an exact answer is ``eq`` to it. Both runs sample the same
rows the same way: temperature 0, and as many tokens as the longest reference needs (counted with the base model's
tokenizer) plus a margin. Classification data without a stop sequence gets no margin: the model would not stop after
its label, and a label followed by more words is not the label.

The rows are stored as an ``evals`` file of the project (the runs read it by id), whatever the validation file's
size; at most ``MAX_ROWS`` rows are evaluated. The eval's metadata names the job (``fine_tuning_job_id``), each
run's names the job and its role (``base`` or ``fine_tuned``): that is how the job finds its eval again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.prompt_format import PromptFormat
from app.datasets.reader import SourceInfo, iter_jsonl
from app.datasets.schemas import Format
from app.evals.models import Eval, EvalRun
from app.evals.repository import EvalRepository
from app.evals.schemas import CompletionsRunDataSource, CreateEvalRequest, TemplateMessage
from app.evals.service import eval_service
from app.files.models import FilePurpose, StoredFile
from app.files.service import file_service
from app.files.storage import BlobStore, digest
from app.tokenizers import Tokenizer, UnknownModel, tokenizer_for_model

JOB_KEY = "fine_tuning_job_id"  # in the eval's and its runs' metadata
ROLE_KEY = "role"  # in the runs' metadata
BASE, FINE_TUNED = "base", "fine_tuned"
MAX_ROWS = 1000
PASS_THRESHOLD = 0.5  # of the rouge_l criterion
MAX_TOKENS_CAP = 1024
_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant"})

Kind = Literal["classification", "generation", "chat"]

_REFERENCE = "{{item.reference}}"
_ANSWER = "{{sample.output_text}}"
_STRING: dict[str, Any] = {"type": "string"}
_SCHEMAS: dict[str, dict[str, Any]] = {
    "prompt": {
        "type": "object",
        "properties": {"prompt": _STRING, "reference": _STRING},
        "required": ["prompt", "reference"],
    },
    "chat": {
        "type": "object",
        "properties": {
            "messages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"role": _STRING, "content": _STRING},
                    "required": ["role", "content"],
                },
            },
            "reference": _STRING,
        },
        "required": ["messages", "reference"],
    },
}


class NothingToEvaluate(Exception):
    """The validation file gives no row an eval could grade (the message says why)."""


@dataclass(frozen=True, slots=True)
class Rows:
    kind: Kind
    items: list[dict[str, Any]]
    total: int  # the file's usable examples: ``items`` holds the first MAX_ROWS of them
    max_tokens: int


@dataclass(frozen=True, slots=True)
class JobEval:
    """A job's eval and its two runs."""

    evaluation: Eval
    base: EvalRun
    fine_tuned: EvalRun

    @property
    def runs(self) -> tuple[EvalRun, EvalRun]:
        return self.base, self.fine_tuned


@dataclass(frozen=True, slots=True)
class Queued:
    """What ``create`` made: the eval, its runs, and how many rows they grade (of how many the file has)."""

    job_eval: JobEval
    kind: Kind
    rows: int
    total: int
    criterion: str


def criterion(kind: Kind) -> dict[str, Any]:
    """The one testing criterion of a job's eval."""
    if kind == "classification":
        return {
            "type": "string_check",
            "name": "classification/accuracy",
            "input": _ANSWER,
            "reference": _REFERENCE,
            "operation": "eq",
        }
    return {
        "type": "text_similarity",
        "name": f"rouge_l >= {PASS_THRESHOLD}",
        "input": _ANSWER,
        "reference": _REFERENCE,
        "evaluation_metric": "rouge_l",
        "pass_threshold": PASS_THRESHOLD,
    }


def read_rows(
    path: Path, data_format: str | None, prompt_format: PromptFormat | None, *, classification: bool, tokenizer: str
) -> Rows:
    """The eval rows of a validation file (synchronous: call it in a thread); ``NothingToEvaluate`` when none."""
    if data_format == Format.CHAT:
        kind: Kind = "chat"
        pairs = list(_chat_rows(path))
    elif data_format == Format.PROMPT_COMPLETION:
        kind = "classification" if classification else "generation"
        pairs = list(_prompt_rows(path, prompt_format))
    else:
        raise NothingToEvaluate(f"its validation data is in {data_format or 'an unknown'} format")
    if not pairs:
        raise NothingToEvaluate("its validation file has no example with an answer to compare with")
    chosen = pairs[:MAX_ROWS]
    longest = max(_counter(tokenizer).count_batch([target for _, target in chosen]))
    exact = kind == "classification" and (prompt_format is None or not prompt_format.stop)
    max_tokens = longest if exact else longest + max(4, longest // 4)
    return Rows(kind, [item for item, _ in chosen], len(pairs), max(1, min(max_tokens, MAX_TOKENS_CAP)))


def _examples(path: Path) -> Iterator[dict[str, Any]]:
    for record in iter_jsonl(path, SourceInfo("jsonl")):
        if not record.blank and record.error is None and isinstance(record.value, dict):
            yield record.value


def _prompt_rows(path: Path, fmt: PromptFormat | None) -> Iterator[tuple[dict[str, Any], str]]:
    """``({"prompt", "reference"}, the completion as trained)`` per example."""
    for example in _examples(path):
        prompt, completion = example.get("prompt"), example.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            continue
        reference = fmt.clean(completion, first=True) if fmt is not None else completion
        if reference.strip():
            yield {"prompt": prompt, "reference": reference}, completion


def _chat_rows(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """``({"messages", "reference"}, the last assistant message)`` per example that ends with one."""
    for example in _examples(path):
        raw = example.get("messages")
        if not isinstance(raw, list) or not raw:
            continue
        messages = [_plain(m) for m in raw]
        if any(m is None for m in messages):
            continue  # tool calls, functions: not a conversation a completions run replays
        plain = [m for m in messages if m is not None]
        last = plain[-1]
        if last["role"] != "assistant" or not last["content"].strip() or len(plain) < 2:
            continue
        yield {"messages": plain[:-1], "reference": last["content"]}, last["content"]


def _plain(message: object) -> dict[str, str] | None:
    """``{role, content}`` of a text message; None for any other kind."""
    if not isinstance(message, Mapping) or message.get("role") not in _CHAT_ROLES:
        return None
    content = message.get("content")
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        if not all(isinstance(p, str) for p in parts):
            return None
        content = "".join(str(p) for p in parts)
    if not isinstance(content, str):
        return None
    return {"role": str(message["role"]), "content": content}


def _counter(model: str) -> Tokenizer:
    try:
        return tokenizer_for_model(model)
    except UnknownModel:
        return tokenizer_for_model(None)  # the cookbook's count: the margin covers the difference


async def create(
    session: AsyncSession,
    store: BlobStore,
    *,
    project_id: str,
    job_id: str,
    validation: StoredFile,
    prompt_format: PromptFormat | None,
    classification: bool,
    base_model: str,
    fine_tuned_model: str,
    api_base: str,
) -> Queued:
    """The job's eval, its rows stored as an evals file, and its two queued runs, in the caller's transaction.
    ``NothingToEvaluate`` when the validation file gives no row."""
    data_format = (validation.validation or {}).get("format")
    rows = await asyncio.to_thread(
        read_rows,
        store.path(validation.storage_key),
        data_format,
        prompt_format,
        classification=classification and data_format == Format.PROMPT_COMPLETION,
        tokenizer=base_model,
    )
    file = await store_rows(session, store, project_id, f"{job_id}-validation-eval.jsonl", rows.items)
    check = criterion(rows.kind)
    body = CreateEvalRequest.model_validate(
        {
            "name": f"{job_id} validation",
            "metadata": {JOB_KEY: job_id},
            "data_source_config": {
                "type": "custom",
                "item_schema": item_schema(rows.kind),
                "include_sample_schema": True,
            },
            "testing_criteria": [check],
        }
    )
    evaluation = await eval_service.create(session, None, project_id, body)
    runs = []
    for role, model in ((BASE, base_model), (FINE_TUNED, fine_tuned_model)):
        source = data_source(rows, model, file.id)
        runs.append(
            await eval_service.create_own_run(
                session,
                store,
                project_id,
                evaluation.id,
                source,
                name=f"{job_id} validation: {role.replace('_', '-')} {model}",
                metadata={JOB_KEY: job_id, ROLE_KEY: role},
                api_base=api_base,
            )
        )
    base, fine_tuned = runs
    return Queued(JobEval(evaluation, base, fine_tuned), rows.kind, len(rows.items), rows.total, check["name"])


def item_schema(kind: Kind) -> dict[str, Any]:
    """The JSON schema of the rows of ``kind``."""
    return _SCHEMAS["chat" if kind == "chat" else "prompt"]


def data_source(rows: Rows, model: str, file_id: str) -> CompletionsRunDataSource:
    if rows.kind == "chat":
        messages: dict[str, Any] = {"type": "item_reference", "item_reference": "item.messages"}
    else:
        messages = {"type": "template", "template": [TemplateMessage.user("{{item.prompt}}")]}
    return CompletionsRunDataSource.model_validate(
        {
            "type": "completions",
            "model": model,
            "input_messages": messages,
            "sampling_params": {"temperature": 0, "max_completion_tokens": rows.max_tokens},
            "source": {"type": "file_id", "id": file_id},
        }
    )


async def store_rows(
    session: AsyncSession, store: BlobStore, project_id: str, filename: str, items: Sequence[dict[str, Any]]
) -> StoredFile:
    temp = store.temp_path()
    await asyncio.to_thread(_write_jsonl, temp, items)
    size, sha256 = await asyncio.to_thread(digest, temp)
    return await file_service.store_blob(
        session,
        store,
        project_id,
        temp_path=temp,
        filename=filename,
        purpose=FilePurpose.evals,
        size=size,
        sha256=sha256,
    )


def _write_jsonl(path: Path, items: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps({"item": item}, ensure_ascii=False) + "\n")


async def of_job(session: AsyncSession, project_id: str, job_id: str) -> JobEval | None:
    """The eval a job ended with and its two runs (the first of each role), or None."""
    repo = EvalRepository(session)
    evaluation = await repo.first_with_metadata(project_id, JOB_KEY, job_id)
    if evaluation is None:
        return None
    by_role: dict[str, EvalRun] = {}
    for run in await repo.runs_with_metadata(project_id, evaluation.id, ROLE_KEY):
        metadata = run.run_metadata or {}
        if metadata.get(JOB_KEY) == job_id:
            by_role.setdefault(metadata[ROLE_KEY], run)
    if BASE not in by_role or FINE_TUNED not in by_role:
        return None
    return JobEval(evaluation, by_role[BASE], by_role[FINE_TUNED])


def job_of(run: EvalRun) -> str | None:
    """The job whose eval ``run`` belongs to, as its metadata says (None for any other run)."""
    metadata = run.run_metadata or {}
    job_id = metadata.get(JOB_KEY)
    return job_id if isinstance(job_id, str) and metadata.get(ROLE_KEY) in (BASE, FINE_TUNED) else None
