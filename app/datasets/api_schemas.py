"""Wire schemas of /v1/datasets (the analysis schemas themselves live in ``schemas.py``, shared with the CLI)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.datasets.schemas import DatasetReport, Fix, Issue
from app.files.schemas import FileOut
from app.kit.schemas import RequestSchema, Schema


class DatasetReportOut(DatasetReport):
    object: Literal["dataset.report"] = "dataset.report"
    file_id: str


class PrepareRequest(RequestSchema):
    fixes: list[Fix] | None = Field(
        default=None, description="Fixes to apply; omitted or null applies the report's recommended fixes."
    )
    split: float | None = Field(
        default=None, gt=0, lt=1, description="Share of examples for a validation file (stratified by class)."
    )
    seed: int = Field(default=0, ge=0, description="Seed of the train/validation split.")
    model: str | None = Field(default=None, max_length=256, description="Model whose tokenizer and limits apply.")


class PrepareOut(Schema):
    object: Literal["dataset.preparation"] = "dataset.preparation"
    source_file_id: str
    fixes: list[Fix]
    applied: dict[Fix, int] = Field(description="Examples changed or dropped by each fix.")
    n_written: int
    training_file: str = Field(description="Id of the prepared (training) file.")
    validation_file: str | None = Field(description="Id of the validation file when `split` was given.")
    n_train: int
    n_valid: int
    files: list[FileOut]
    warnings: list[Issue]
