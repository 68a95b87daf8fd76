"""Validation of every fine-tune upload, in the background right after the upload commits.

The file's ``status`` goes ``uploaded`` → ``processed`` or ``error``; ``status_details`` sums up the first errors
with their line numbers, and ``validation`` keeps the summary that job creation checks later.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.datasets.errors import DatasetError
from app.datasets.reader import detect_source_type
from app.datasets.report import validate_file
from app.datasets.schemas import ValidationSummary
from app.db import commit
from app.files.models import FilePurpose, FileStatus, StoredFile
from app.files.repository import FileRepository
from app.files.storage import BlobStore
from app.kit.tasks import TaskRunner

log = logging.getLogger(__name__)

DETAIL_ERRORS = 5


def describe(summary: ValidationSummary) -> str:
    """A one-paragraph account of a failed validation, first errors with their lines."""
    if summary.n_examples == 0:
        head = "The file has no examples."
    else:
        head = f"{summary.n_errors} error(s) in {summary.n_examples} example(s)."
    shown = [
        f"line {issue.line}: {issue.code}: {issue.message}" if issue.line else f"{issue.code}: {issue.message}"
        for issue in summary.errors[:DETAIL_ERRORS]
    ]
    more = summary.n_errors - len(shown)
    tail = f" (and {more} more; see GET /v1/datasets/{{file_id}}/report)" if more > 0 else ""
    return " ".join([head, "; ".join(shown) + tail]).strip()


class UploadValidator:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: BlobStore,
        runner: TaskRunner,
        concurrency: int = 1,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.store = store
        self.runner = runner
        # Validation is CPU-bound; bounding it keeps the event loop's thread pool and the cores for requests.
        self._slots = asyncio.Semaphore(concurrency)

    @staticmethod
    def wants(record: StoredFile) -> bool:
        return record.purpose is FilePurpose.fine_tune

    def schedule(self, session: AsyncSession, record: StoredFile) -> None:
        """Validate ``record`` once the transaction that created it commits."""
        project_id, file_id = record.project_id, record.id
        self.runner.spawn_after_commit(session, lambda: self.validate(project_id, file_id), name=f"validate-{file_id}")

    async def validate(self, project_id: str, file_id: str) -> None:
        async with self._slots:
            async with self.sessionmaker() as session:
                record = await FileRepository(session).get(project_id, file_id)
                if record is None or record.status is not FileStatus.uploaded:
                    return  # deleted meanwhile, or another process got there first
                path, name = self.store.path(record.storage_key), record.filename
            status, details, summary = await asyncio.to_thread(self._check, path, name)
        async with self.sessionmaker() as session:
            record = await FileRepository(session).get(project_id, file_id)
            if record is None or record.status is not FileStatus.uploaded:
                return
            record.status, record.status_details = status, details
            record.validation = summary.model_dump(mode="json") if summary else None
            await commit(session)
        log.info("validated %s: %s", file_id, status)

    @staticmethod
    def _check(path: Path, filename: str) -> tuple[FileStatus, str | None, ValidationSummary | None]:
        try:
            kind = detect_source_type(path, filename)
        except DatasetError as exc:
            return FileStatus.error, exc.message, None
        if kind != "jsonl":
            return (
                FileStatus.error,
                f"{filename} is a {kind.upper()} file; fine-tuning takes JSONL. Convert it with "
                "POST /v1/datasets/{file_id}/prepare (or `ftgw prepare-data`).",
                None,
            )
        try:
            summary = validate_file(path, name=filename)
        except DatasetError as exc:
            where = f"line {exc.line}: " if exc.line else ""
            return FileStatus.error, f"{where}{exc.message}", None
        except Exception:
            log.exception("validating %s failed unexpectedly", path)
            return FileStatus.error, "The file could not be validated because of an internal error.", None
        if summary.ok:
            return FileStatus.processed, None, summary
        return FileStatus.error, describe(summary), summary

    async def resume_pending(self) -> int:
        """Queue files left ``uploaded`` by a previous process that stopped before validating them."""
        async with self.sessionmaker() as session:
            pending = await FileRepository(session).pending_validation()
        for project_id, file_id in pending:
            self.runner.spawn(partial(self.validate, project_id, file_id), name=f"validate-{file_id}")
        return len(pending)
