"""What a migration reads from the upstream provider, through the openai SDK: its jobs, files and fine-tuned
models, a file's bytes, and answers of its models (for distillation).

The SDK retries connection errors, timeouts, 429s and 5xx with backoff (the provider's ``max_retries``); what still
fails is :class:`UpstreamUnavailable`, which stops the migration so that it can resume later from its last saved
step. A 404 is :class:`UpstreamGone` (a file deleted there); any other refusal is :class:`UpstreamRefused`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types.fine_tuning import FineTuningJob

from app.migration.schemas import UpstreamFile, UpstreamInventory, UpstreamJob, UpstreamModel
from app.providers.upstream import TRANSIENT, UpstreamProvider

MAX_LISTED = 1000  # jobs, files and models read from the upstream at most, each


class UpstreamUnavailable(Exception):
    """The upstream did not answer (after the SDK's retries): the migration stops and can be resumed."""


class UpstreamGone(Exception):
    """A 404 from the upstream: the job, file or model is not (any more) there."""


class UpstreamRefused(Exception):
    """A 4xx other than 404: the upstream will not do it, and asking again will not help."""


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """The SDK's errors as the migration's three kinds."""
    try:
        yield
    except openai.NotFoundError as exc:
        raise UpstreamGone(_message(exc)) from exc
    except TRANSIENT as exc:
        raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except openai.APIStatusError as exc:
        raise UpstreamRefused(f"{exc.status_code}: {_message(exc)}") from exc


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    return str(body.get("message") or exc.message)


def method_of(job: FineTuningJob) -> str:
    method = job.method
    return str(method.type) if method is not None and method.type else "supervised"


def hyperparameters_of(job: FineTuningJob) -> dict[str, Any]:
    """The job's hyperparameters as the upstream reports them (resolved numbers once it ran)."""
    found: dict[str, Any] = {}
    method = job.method
    section = getattr(method, method_of(job), None) if method is not None else None
    hyper = getattr(section, "hyperparameters", None) if section is not None else None
    for source in (job.hyperparameters, hyper):
        if source is not None:
            found.update({k: v for k, v in source.model_dump().items() if v is not None})
    return found


@dataclass(frozen=True, slots=True)
class Listed:
    filename: str
    bytes: int
    sha256: str | None


@dataclass(frozen=True, slots=True)
class Download:
    size: int
    sha256: str


class UpstreamSource:
    """One provider, read for a migration. Use ``async with``: it holds an HTTP client."""

    def __init__(self, provider: UpstreamProvider) -> None:
        self.provider = provider
        self.name = provider.name
        self._client: AsyncOpenAI | None = None

    async def __aenter__(self) -> UpstreamSource:
        try:
            self._client = self.provider.client()
        except RuntimeError as exc:  # its API key is not set
            raise UpstreamRefused(str(exc)) from exc
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._client is not None:
            await self._client.close()

    @property
    def client(self) -> AsyncOpenAI:
        assert self._client is not None, "use UpstreamSource in `async with`"
        return self._client

    async def inventory(self) -> UpstreamInventory:
        async with translated():
            jobs = [job async for job in _first(self.client.fine_tuning.jobs.list(limit=100), MAX_LISTED)]
            files = [f async for f in _first(self.client.files.list(purpose="fine-tune"), MAX_LISTED)]
            models = [m async for m in _first(self.client.models.list(), MAX_LISTED) if m.id.startswith("ft:")]
        return UpstreamInventory(
            provider=self.name,
            jobs=[
                UpstreamJob(
                    id=job.id,
                    model=job.model,
                    fine_tuned_model=job.fine_tuned_model,
                    status=str(job.status),
                    method=method_of(job),
                    training_file=job.training_file,
                    validation_file=job.validation_file,
                    trained_tokens=job.trained_tokens,
                    created_at=job.created_at,
                )
                for job in jobs
            ],
            files=[
                UpstreamFile(
                    id=f.id, filename=f.filename, bytes=f.bytes, purpose=str(f.purpose), created_at=f.created_at
                )
                for f in files
            ],
            models=[UpstreamModel(id=m.id, owned_by=m.owned_by, created=m.created) for m in models],
        )

    async def jobs(self, ids: list[str] | None) -> list[FineTuningJob]:
        """The chosen jobs (each must exist), or every succeeded job with a fine-tuned model."""
        async with translated():
            if ids is not None:
                return [await self.client.fine_tuning.jobs.retrieve(job_id) for job_id in ids]
            listed = [job async for job in _first(self.client.fine_tuning.jobs.list(limit=100), MAX_LISTED)]
        chosen = [job for job in listed if job.status == "succeeded" and job.fine_tuned_model]
        return sorted(chosen, key=lambda job: (job.created_at, job.id))

    async def file(self, file_id: str) -> Listed | None:
        """A file there as listed (None when it is gone): OpenAI gives no checksum, ftgw does (``sha256``)."""
        try:
            async with translated():
                found = await self.client.files.retrieve(file_id)
        except UpstreamGone:
            return None
        sha256 = (found.model_extra or {}).get("sha256")
        return Listed(found.filename, found.bytes, sha256 if isinstance(sha256, str) else None)

    async def download(self, file_id: str, target: Path) -> Download:
        """The file's bytes into ``target``, streamed; its size and SHA-256."""
        sha = hashlib.sha256()
        size = 0
        async with translated(), self.client.files.with_streaming_response.content(file_id) as response:
            with target.open("wb") as out:
                async for chunk in response.iter_bytes(1 << 16):
                    out.write(chunk)
                    sha.update(chunk)
                    size += len(chunk)
        return Download(size, sha.hexdigest())

    async def answer(self, model: str, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> str:
        """The model's answer to a conversation (chat completions)."""
        async with translated():
            completion = await self.client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
            )
        return (completion.choices[0].message.content or "") if completion.choices else ""

    async def complete(self, model: str, prompt: str, *, max_tokens: int, temperature: float) -> str:
        """The model's completion of a prompt (legacy completions: how prompt-completion fine-tunes are called)."""
        async with translated():
            completion = await self.client.completions.create(
                model=model, prompt=prompt, max_tokens=max_tokens, temperature=temperature
            )
        return completion.choices[0].text if completion.choices else ""


@dataclass(frozen=True, slots=True)
class BatchState:
    status: str
    output_file_id: str | None
    error_file_id: str | None

    @property
    def ended(self) -> bool:
        return self.status in {"completed", "failed", "expired", "cancelled"}


class UpstreamBatches:
    """The upstream's Batch API, for distillation: OpenAI bills batched calls at half price."""

    def __init__(self, source: UpstreamSource) -> None:
        self.client = source.client

    async def offered(self) -> bool:
        try:
            async with translated():
                await self.client.batches.list(limit=1)
        except (UpstreamGone, UpstreamRefused):
            return False
        return True

    async def start(self, endpoint: str, requests: list[tuple[str, dict[str, Any]]], name: str) -> str:
        """A batch of ``(custom_id, body)`` requests to ``endpoint``; its id."""
        lines = [
            json.dumps({"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body})
            for custom_id, body in requests
        ]
        async with translated():
            uploaded = await self.client.files.create(file=(name, "\n".join(lines).encode()), purpose="batch")
            batch = await self.client.batches.create(
                input_file_id=uploaded.id,
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
                metadata={"ftgw": "migration distillation"},
            )
        return batch.id

    async def state(self, batch_id: str) -> BatchState:
        async with translated():
            batch = await self.client.batches.retrieve(batch_id)
        return BatchState(str(batch.status), batch.output_file_id, batch.error_file_id)

    async def results(self, file_id: str) -> list[dict[str, Any]]:
        """The lines of a batch's output (or error) file."""
        async with translated():
            content = await self.client.files.content(file_id)
        return [json.loads(line) for line in content.text.splitlines() if line.strip()]


async def _first(pages: Any, limit: int) -> AsyncIterator[Any]:
    """At most ``limit`` items of an SDK paginator, all pages followed."""
    count = 0
    async for item in pages:
        if count >= limit:
            return
        count += 1
        yield item
