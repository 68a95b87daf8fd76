"""Dataset reports and prepare, for files stored in a project; the analysis itself runs in a worker thread."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.api_schemas import PrepareRequest
from app.datasets.errors import DatasetError
from app.datasets.models import StoredReport
from app.datasets.prepare import prepare_file
from app.datasets.report import analyse_file
from app.datasets.repository import ReportRepository
from app.datasets.schemas import DatasetReport, PrepareResult
from app.datasets.validation import UploadValidator
from app.errors import GatewayError, InvalidRequest, NotFound
from app.files.models import FilePurpose, StoredFile
from app.files.service import file_service
from app.files.storage import BlobStore, digest
from app.kit.ids import new_id

_PARAM_OF_CODE = {"invalid_split": "split", "tokenizer_unavailable": "model"}


def as_gateway_error(exc: DatasetError) -> GatewayError:
    """A dataset problem as the 4xx the caller should see: unknown models are 404s, the rest 400s."""
    message = f"line {exc.line}: {exc.message}" if exc.line else exc.message
    if exc.code == "unknown_model":
        return NotFound(message, param="model", code="model_not_found")
    return InvalidRequest(message, param=_PARAM_OF_CODE.get(exc.code, "file_id"), code=exc.code)


@dataclass
class Prepared:
    source: StoredFile
    result: PrepareResult
    files: list[StoredFile]


class DatasetService:
    async def report(
        self,
        session: AsyncSession,
        store: BlobStore,
        project_id: str,
        file_id: str,
        *,
        model: str | None,
        max_issues: int,
    ) -> DatasetReport:
        """The report of a stored file; computed once per (file, model, max_issues) since files never change."""
        source = await file_service.get(session, project_id, file_id)
        repo = ReportRepository(session)
        cached = await repo.get(project_id, file_id, model or "", max_issues)
        if cached is not None:
            return DatasetReport.model_validate(cached.report)
        path = store.path(source.storage_key)
        try:
            report = await asyncio.to_thread(
                analyse_file, path, model=model, max_issues=max_issues, name=source.filename
            )
        except DatasetError as exc:
            raise as_gateway_error(exc) from None
        await repo.add_if_absent(
            StoredReport(
                id=new_id("dsreport"),
                project_id=project_id,
                file_id=file_id,
                model=model or "",
                max_issues=max_issues,
                report=report.model_dump(mode="json"),
            )
        )
        return report

    async def prepare(
        self,
        session: AsyncSession,
        store: BlobStore,
        validator: UploadValidator,
        project_id: str,
        file_id: str,
        request: PrepareRequest,
    ) -> Prepared:
        """Write the fixed (and split) file(s) as new fine-tune files that remember their source."""
        source = await file_service.get(session, project_id, file_id)
        stem = Path(source.filename).stem or "dataset"
        with tempfile.TemporaryDirectory(prefix="prepare-", dir=store.tmp) as scratch:
            try:
                result = await asyncio.to_thread(
                    prepare_file,
                    store.path(source.storage_key),
                    fixes=set(request.fixes) if request.fixes is not None else None,
                    split=request.split,
                    seed=request.seed,
                    out_dir=Path(scratch),
                    stem=stem,
                    model=request.model,
                    name=source.filename,
                )
            except DatasetError as exc:
                raise as_gateway_error(exc) from None
            if result.n_train == 0 or (request.split and result.n_valid == 0):
                raise InvalidRequest(
                    f"No examples would be left in the prepared file(s) ({result.n_written} written in all).",
                    param="file_id",
                    code="empty_result",
                )
            files = []
            for output in result.outputs:
                size, sha256 = await asyncio.to_thread(digest, output)
                record = await file_service.store_blob(
                    session,
                    store,
                    project_id,
                    temp_path=output,
                    filename=output.name,
                    purpose=FilePurpose.fine_tune,
                    size=size,
                    sha256=sha256,
                    source_file_id=source.id,
                )
                validator.schedule(session, record)
                files.append(record)
        return Prepared(source=source, result=result, files=files)


dataset_service = DatasetService()
