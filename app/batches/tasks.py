"""Batches as leased background work: the worker's loop for batches (see ``app.worker``).

A worker claims a batch, keeps its lease, and moves it along: ``validating`` (every line of the input checked, the
batch failed with each problem's line number if any), ``in_progress`` (the requests run ``FTGW_BATCH_CONCURRENCY``
at a time through the same inference gateway as API calls, as the key that created the batch), ``finalizing``
(the output and error files written in the input's order), ``completed``. Each answer is appended to a work file as
it arrives, so a batch resumed by another worker (this one died, or stopped) runs only the requests still missing.
A ``cancelling`` batch stops asking, and ends ``cancelled`` with what was done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import Role
from app.auth.principal import Principal
from app.batches.models import Batch, BatchStatus
from app.batches.repository import BatchRepository
from app.batches.schemas import CHAT
from app.config import Settings
from app.db import commit
from app.errors import GatewayError, NotFound, invalid_request_body
from app.files.models import FilePurpose
from app.files.service import file_service
from app.files.storage import BlobStore, digest
from app.inference.gateway import InferenceGateway
from app.inference.schemas import ChatCompletionRequest, CompletionRequest
from app.kit.ids import random_token
from app.kit.time import utcnow
from app.worker.lease import Lease, kept

log = logging.getLogger(__name__)

MAX_REQUESTS = 50_000  # OpenAI's limit per batch
MAX_ERRORS = 100  # problems of an input file reported, at most


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based, in the input file
    custom_id: str
    body: dict[str, Any]


def check_input(path: Path, endpoint: str) -> tuple[list[Line], list[dict[str, Any]]]:
    """The input file's requests, and its problems (each with its line number); synchronous: call it in a thread."""
    lines: list[Line] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()

    def problem(number: int | None, code: str, message: str, param: str | None = None) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append({"code": code, "message": message, "line": number, "param": param})

    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                problem(number, "invalid_json_line", f"Line {number} is not JSON: {exc}.")
                continue
            if not isinstance(value, dict):
                problem(number, "invalid_request", f"Line {number} is not a JSON object.")
                continue
            custom_id, method, url, body = (value.get(k) for k in ("custom_id", "method", "url", "body"))
            if not isinstance(custom_id, str) or not custom_id:
                problem(number, "missing_required_parameter", "custom_id must be a non-empty string.", "custom_id")
            elif custom_id in seen:
                problem(number, "duplicate_custom_id", f"custom_id '{custom_id}' is used twice.", "custom_id")
            elif method != "POST":
                problem(number, "invalid_method", "method must be POST.", "method")
            elif url != endpoint:
                problem(number, "mismatched_url", f"url must be the batch's endpoint, {endpoint}.", "url")
            elif not isinstance(body, dict):
                problem(number, "missing_required_parameter", "body must be a JSON object.", "body")
            elif body.get("stream"):
                problem(number, "unsupported_value", "A batch's requests are not streamed.", "body.stream")
            else:
                seen.add(custom_id)
                lines.append(Line(number, custom_id, body))
    if not lines and not errors:
        problem(None, "empty_file", "The input file holds no request.")
    if len(lines) > MAX_REQUESTS:
        problem(None, "too_many_requests", f"The input file holds {len(lines)} requests; at most {MAX_REQUESTS}.")
    return lines, errors


class BatchTask:
    name = "batches"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: BlobStore,
        gateway: InferenceGateway,
        data_dir: Path,
        *,
        lease_seconds: float,
        heartbeat_seconds: float,
        concurrency: int,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.store = store
        self.gateway = gateway
        self.data_dir = data_dir
        self.lease = timedelta(seconds=lease_seconds)
        self.heartbeat_seconds = heartbeat_seconds
        self.concurrency = concurrency

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: BlobStore,
        gateway: InferenceGateway,
    ) -> BatchTask:
        return cls(
            sessionmaker,
            store,
            gateway,
            settings.data_dir,
            lease_seconds=settings.worker_lease_seconds,
            heartbeat_seconds=settings.worker_heartbeat_seconds,
            concurrency=settings.batch_concurrency,
        )

    async def run_next(self, worker_id: str) -> bool:
        async with self.sessionmaker() as session:
            batch = await BatchRepository(session).claim(worker_id, self.lease)
            await commit(session)
        if batch is None:
            return False
        execution = _Execution(self, batch, worker_id)
        lease = Lease(
            execution.renew, duration=self.lease, interval=self.heartbeat_seconds, on_lost=execution.lose, name=batch.id
        )
        try:
            async with kept(lease):
                try:
                    await execution.run()
                except Exception:
                    log.exception("batch %s failed", batch.id)
                    failure = [_error("internal_error", "The batch stopped on an error.")]
                    await execution.end(BatchStatus.failed, errors=failure)
        finally:
            await asyncio.shield(execution.release())
        return True


def _error(code: str, message: str, line: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line, "param": None}


class _Execution:
    """One worker's run of one batch."""

    def __init__(self, task: BatchTask, batch: Batch, worker_id: str) -> None:
        self.task = task
        self.id = batch.id
        self.project_id = batch.project_id
        self.endpoint = batch.endpoint
        self.input_file_id = batch.input_file_id
        self.worker_id = worker_id
        # The batch's requests are the creating key's (its usage is that key's), paced by the batch's concurrency.
        self.principal = Principal(project_id=batch.project_id, key_id=batch.created_by or batch.id, role=Role.member)
        self.work = task.data_dir / "batches" / batch.id / "results.jsonl"
        self.lost = False
        self.cancelling = batch.status is BatchStatus.cancelling

    def lose(self) -> None:
        self.lost = True

    async def renew(self) -> bool:
        async with self.task.sessionmaker() as session:
            status = await BatchRepository(session).renew(self.id, self.worker_id, self.task.lease)
            await commit(session)
        if status is BatchStatus.cancelling:
            self.cancelling = True
        return status is not None

    async def release(self) -> None:
        async with self.task.sessionmaker() as session:
            await BatchRepository(session).release(self.id, self.worker_id)
            await commit(session)

    async def _held(self, session: AsyncSession) -> Batch | None:
        return await BatchRepository(session).held(self.id, self.worker_id)

    async def run(self) -> None:
        async with self.task.sessionmaker() as session:
            try:
                record = await file_service.get(session, self.project_id, self.input_file_id)
            except NotFound:
                await self.end(BatchStatus.failed, errors=[_error("input_file_missing", "The input file was deleted.")])
                return
            path = self.task.store.path(record.storage_key)
        lines, errors = await asyncio.to_thread(check_input, path, self.endpoint)
        if errors:
            await self.end(BatchStatus.failed, errors=errors)
            return
        async with self.task.sessionmaker() as session:
            batch = await self._held(session)
            if batch is None:
                return
            if batch.status is BatchStatus.validating:
                batch.status, batch.in_progress_at, batch.request_total = BatchStatus.in_progress, utcnow(), len(lines)
            await commit(session)
        done = await asyncio.to_thread(_done, self.work)
        await self._ask([line for line in lines if line.custom_id not in done])
        if self.lost:
            return  # another worker carries on from the work file
        if not self.cancelling:
            async with self.task.sessionmaker() as session:
                batch = await self._held(session)
                if batch is None:
                    return
                if batch.status is BatchStatus.in_progress:
                    batch.status, batch.finalizing_at = BatchStatus.finalizing, utcnow()
                await commit(session)
        await self._finalize(lines)

    async def _ask(self, pending: list[Line]) -> None:
        slots = asyncio.Semaphore(self.task.concurrency)
        lock = asyncio.Lock()
        self.work.parent.mkdir(parents=True, exist_ok=True)

        async def one(line: Line) -> None:
            async with slots:
                if self.lost or self.cancelling:
                    return
                result = await self._answer(line)
            async with lock:
                await asyncio.to_thread(_append, self.work, result)

        await asyncio.gather(*(one(line) for line in pending))

    async def _answer(self, line: Line) -> dict[str, Any]:
        schema = ChatCompletionRequest if self.endpoint == CHAT else CompletionRequest
        usage: dict[str, int] = {}
        try:
            body = schema.model_validate(line.body)
            served = await self.task.gateway.serve(self.principal, body, None)
            status, answer = 200, served.answer.body or {}
            usage = answer.get("usage") or {}
        except ValidationError as exc:  # what the same body sent to the endpoint gets
            located = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            status, answer = 400, invalid_request_body(located, line.body)
        except GatewayError as exc:
            status, answer = exc.status_code, exc.body()
        except Exception:
            log.exception("batch %s: request %s failed", self.id, line.custom_id)
            status, answer = 500, _envelope("The request failed on an internal error.", "server_error", None, None)
        return {
            "line": line.number,
            "custom_id": line.custom_id,
            "status_code": status,
            "body": answer,
            "input_tokens": int(usage.get("prompt_tokens") or 0),
            "output_tokens": int(usage.get("completion_tokens") or 0),
        }

    async def _finalize(self, lines: list[Line]) -> None:
        """The output and error files (input order), then the batch ended, in one transaction."""
        results = await asyncio.to_thread(_done, self.work)
        order = {line.custom_id: line.number for line in lines}
        ok = sorted((r for r in results.values() if r["status_code"] == 200), key=lambda r: order[r["custom_id"]])
        bad = sorted((r for r in results.values() if r["status_code"] != 200), key=lambda r: order[r["custom_id"]])
        async with self.task.sessionmaker() as session:
            output = await self._store(session, "output", ok) if ok else None
            failed = await self._store(session, "error", bad) if bad else None
            batch = await self._held(session)
            if batch is None:
                return
            now = utcnow()
            batch.output_file_id = output
            batch.error_file_id = failed
            batch.request_completed, batch.request_failed = len(ok), len(bad)
            batch.usage = {
                "input_tokens": sum(r["input_tokens"] for r in results.values()),
                "output_tokens": sum(r["output_tokens"] for r in results.values()),
            }
            if batch.status is BatchStatus.cancelling:
                batch.status, batch.cancelled_at = BatchStatus.cancelled, now
            else:
                batch.status, batch.completed_at = BatchStatus.completed, now
            await commit(session)

    async def _store(self, session: AsyncSession, kind: str, results: list[dict[str, Any]]) -> str:
        temp = self.task.store.temp_path()
        await asyncio.to_thread(_write_output, temp, results)
        size, sha256 = await asyncio.to_thread(digest, temp)
        record = await file_service.store_blob(
            session,
            self.task.store,
            self.project_id,
            temp_path=temp,
            filename=f"{self.id}_{kind}.jsonl",
            purpose=FilePurpose.batch_output,
            size=size,
            sha256=sha256,
        )
        return record.id

    async def end(self, status: BatchStatus, *, errors: list[dict[str, Any]]) -> None:
        async with self.task.sessionmaker() as session:
            batch = await self._held(session)
            if batch is None:
                return
            batch.status, batch.errors = status, errors
            batch.failed_at = utcnow()
            await commit(session)


def _envelope(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _append(path: Path, result: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(result, ensure_ascii=False) + "\n")


def _done(path: Path) -> dict[str, dict[str, Any]]:
    """The results recorded so far, by custom_id (a line cut short when a process stopped is asked again)."""
    found: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return found
    with path.open(encoding="utf-8") as f:
        for line in f:
            with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
                row = json.loads(line)
                found[row["custom_id"]] = row
    return found


def _write_output(path: Path, results: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in results:
            line = {
                "id": f"batch_req_{random_token(24)}",
                "custom_id": r["custom_id"],
                "response": {
                    "status_code": r["status_code"],
                    "request_id": f"req_{random_token(24)}",
                    "body": r["body"],
                },
                "error": None,
            }
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
