"""Wire schemas of the fine-tuning jobs API (OpenAI's FineTuningJob, events, checkpoints, create request)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, StringConstraints

from app.fine_tuning.models import EventLevel, EventType, JobStatus
from app.kit.schemas import Metadata, RequestSchema, Schema, UnixTime

Auto = Literal["auto"]
BatchSize = Auto | Annotated[int, Field(ge=1, le=256)]
LearningRateMultiplier = Auto | Annotated[float, Field(gt=0)]
Epochs = Auto | Annotated[int, Field(ge=1, le=50)]
Beta = Auto | Annotated[float, Field(gt=0, le=2)]


class Hyperparameters(RequestSchema):
    batch_size: BatchSize = "auto"
    learning_rate_multiplier: LearningRateMultiplier = "auto"
    n_epochs: Epochs = "auto"


class DPOHyperparameters(Hyperparameters):
    beta: Beta = "auto"


class SupervisedMethod(RequestSchema):
    hyperparameters: Hyperparameters | None = None


class DPOMethod(RequestSchema):
    hyperparameters: DPOHyperparameters | None = None


class Method(RequestSchema):
    type: Literal["supervised", "dpo", "reinforcement"]
    # Only the section of the chosen type goes on the wire (OpenAI's schema has no nulls here).
    supervised: SupervisedMethod | None = Field(default=None, exclude_if=lambda v: v is None)
    dpo: DPOMethod | None = Field(default=None, exclude_if=lambda v: v is None)
    reinforcement: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)


class CreateJobRequest(RequestSchema):
    model: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    training_file: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    validation_file: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    hyperparameters: Hyperparameters | None = Field(default=None, description="Deprecated: use method.")
    method: Method | None = None
    suffix: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    seed: Annotated[int, Field(ge=0, le=2_147_483_647)] | None = None
    metadata: Metadata | None = None
    integrations: list[dict[str, Any]] | None = None
    # The seed's legacy fine-tunes options, still accepted.
    compute_classification_metrics: bool = False
    classification_n_classes: Annotated[int, Field(ge=2)] | None = None
    classification_positive_class: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


class JobError(Schema):
    code: str
    message: str
    param: str | None = None


class JobHyperparameters(Schema):
    batch_size: BatchSize | None = "auto"
    learning_rate_multiplier: LearningRateMultiplier = "auto"
    n_epochs: Epochs = "auto"


class JobOut(Schema):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: UnixTime
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: UnixTime | None
    hyperparameters: JobHyperparameters
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: JobStatus
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: UnixTime | None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None
    method: Method
    user_provided_suffix: str | None = None


class EventOut(Schema):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: UnixTime
    level: EventLevel
    message: str
    type: EventType
    data: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)


class EventList(Schema):
    object: Literal["list"] = "list"
    data: list[EventOut]
    has_more: bool


class CheckpointOut(Schema):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: UnixTime
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str = Field(validation_alias=AliasChoices("fine_tuning_job_id", "job_id"))
    metrics: dict[str, float]
    step_number: int


class JobList(Schema):
    object: Literal["list"] = "list"
    data: list[JobOut]
    has_more: bool
