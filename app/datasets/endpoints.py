"""/v1/datasets: the analysis report of a stored file, and prepare (fix, convert, split) into new files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.auth.principal import PrincipalDep
from app.datasets.api_schemas import DatasetReportOut, PrepareOut, PrepareRequest
from app.datasets.service import dataset_service
from app.datasets.validation import UploadValidator
from app.db import SessionDep
from app.files.endpoints import BlobStoreDep
from app.files.schemas import FileOut

router = APIRouter(prefix="/v1/datasets", tags=["Datasets"])


def get_validator(request: Request) -> UploadValidator:
    validator: UploadValidator = request.app.state.validator
    return validator


ValidatorDep = Annotated[UploadValidator, Depends(get_validator)]


@router.get("/{file_id}/report", response_model=DatasetReportOut)
async def dataset_report(
    file_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    store: BlobStoreDep,
    model: Annotated[
        str | None, Query(max_length=256, description="Count tokens and limits for this model (e.g. gpt-4o-mini).")
    ] = None,
    max_issues: Annotated[int, Query(ge=1, le=1000, description="How many errors and warnings to list.")] = 50,
) -> DatasetReportOut:
    """Validate and analyse a file: format, errors by line, token statistics, cost estimate, suggestions."""
    report = await dataset_service.report(
        session, store, principal.project_id, file_id, model=model, max_issues=max_issues
    )
    return DatasetReportOut.model_validate({**report.model_dump(), "file_id": file_id})


@router.post("/{file_id}/prepare", response_model=PrepareOut)
async def prepare_dataset(
    file_id: str,
    body: PrepareRequest,
    session: SessionDep,
    principal: PrincipalDep,
    store: BlobStoreDep,
    validator: ValidatorDep,
) -> PrepareOut:
    """Apply fixes (convert to JSONL, drop duplicates/empty completions, add separator/space/stop) and split."""
    prepared = await dataset_service.prepare(session, store, validator, principal.project_id, file_id, body)
    result, files = prepared.result, prepared.files
    return PrepareOut(
        source_file_id=prepared.source.id,
        fixes=result.fixes,
        applied=result.applied,
        n_written=result.n_written,
        training_file=files[0].id,
        validation_file=files[1].id if len(files) > 1 else None,
        n_train=result.n_train,
        n_valid=result.n_valid,
        files=[FileOut.model_validate(f) for f in files],
        warnings=result.warnings,
    )
