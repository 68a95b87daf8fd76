"""Wire schemas of /v1/migrations: the create request, the plan shown before anything moves, each item's progress,
and the migration object."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from app.kit.schemas import RequestSchema, Schema, UnixTime
from app.migration.models import MigrationStatus

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class HyperparameterOverrides(RequestSchema):
    """Values used instead of the translated ones (each override is recorded as a translation)."""

    n_epochs: Annotated[int, Field(ge=1, le=50)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=256)] | None = None
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=1000)] | None = None
    beta: Annotated[float, Field(gt=0, le=2)] | None = None


class DistilOptions(RequestSchema):
    prompts_file: Id | None = Field(
        default=None,
        description="A file of this project whose lines hold prompts ({'messages': [...]} without a final assistant "
        "answer, or {'prompt': '...'}): the upstream model answers each, and its answers are the training data.",
    )
    mode: Literal["missing", "always"] = Field(
        default="missing",
        description="'missing': distil only jobs whose training file is gone upstream; 'always': every job, to match "
        "what the upstream model actually serves.",
    )
    max_prompts: Annotated[int, Field(ge=1, le=10_000)] = 1000
    max_tokens: Annotated[int, Field(ge=1, le=4096)] = Field(default=256, description="Per answer.")
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    concurrency: Annotated[int, Field(ge=1, le=32)] = Field(default=4, description="Upstream calls at once.")
    holdout: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default=0.2, description="The share of the answered prompts kept out of training, for the parity eval."
    )
    batch: bool = Field(
        default=True,
        description="Ask through the upstream's Batch API when it offers one (OpenAI bills it at half price, and "
        "answers within 24 hours); otherwise, or with false, by calls, concurrency at a time.",
    )


class ParityOptions(RequestSchema):
    max_rows: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=200, description="Validation rows each model answers (the first ones)."
    )
    max_regression: Annotated[float, Field(ge=0, le=100)] | None = Field(
        default=None,
        description="Gate the switch: refuse it (409) when the new model passes any criterion more than this many "
        "points below the upstream model, unless forced.",
    )


class CreateMigrationRequest(RequestSchema):
    provider: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The upstream provider (FTGW_PROVIDERS) to move from."
    )
    base_model: Id = Field(description="The base model to retrain on (local, or another provider's).")
    jobs: Annotated[list[Id], Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="Upstream job ids; default: every succeeded job with a fine-tuned model."
    )
    suffix: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        default=None, description="The new models' suffix; default: each upstream job's own."
    )
    hyperparameters: HyperparameterOverrides | None = None
    distil: DistilOptions | None = None
    parity: ParityOptions = Field(default_factory=ParityOptions)
    keep_names: bool = Field(default=True, description="Register each upstream model id as an alias of this project.")
    start: bool = Field(default=False, description="Start at once; by default the migration is only planned.")


class SwitchRequest(RequestSchema):
    force: bool = Field(default=False, description="Switch even when parity does not hold (or was not measured).")


class Translation(Schema):
    field: str
    upstream: Any
    local: Any
    note: str


class FileCopy(Schema):
    upstream_id: str
    filename: str | None = None
    bytes: int | None = None
    upstream_sha256: str | None = Field(default=None, description="When the upstream gives one (OpenAI does not).")
    state: Literal["pending", "copied", "missing"] = "pending"
    local_id: str | None = None
    sha256: str | None = Field(default=None, description="Of the copy.")
    verified: str | None = Field(default=None, description="How the copy was checked against the upstream's.")


class Distillation(Schema):
    prompts: int = 0
    answered: int = 0
    failed: int = Field(default=0, description="Prompts refused, or answered with nothing.")
    format: Literal["chat", "prompt_completion"] = "chat"
    via: Literal["calls", "batch"] = "calls"
    upstream_batch: str | None = Field(default=None, description="The upstream batch that answered (or answers).")
    training_file: str | None = None
    holdout_file: str | None = Field(default=None, description="Answers kept out of training, for parity.")


class CriterionParity(Schema):
    testing_criteria: str
    name: str
    upstream: dict[str, Any]
    migrated: dict[str, Any]
    difference: float | None = Field(description="Points (0-100) the new model passes above the upstream one.")


class Parity(Schema):
    eval_id: str
    upstream_run_id: str
    migrated_run_id: str
    status: Literal["in_progress", "completed", "failed"]
    rows: int
    criteria: list[CriterionParity] = Field(default_factory=list)
    disagreements: int = 0
    examples: list[dict[str, Any]] = Field(default_factory=list, description="A few rows on which they disagree.")
    holds: bool | None = Field(default=None, description="Against max_regression; null when none was set.")


Step = Literal["alias", "copy", "distil", "train", "parity", "version", "done"]


class MigrationItem(Schema):
    """One upstream job on its way: where it came from, what was translated, and how far it got."""

    upstream_job: str
    upstream_model: str | None
    upstream_base_model: str
    upstream_status: str
    method: str
    upstream_hyperparameters: dict[str, Any] = Field(default_factory=dict)
    upstream_metadata: dict[str, Any] | None = None
    upstream_trained_tokens: int | None = None
    suffix: str | None = None
    training_file: FileCopy | None = None
    validation_file: FileCopy | None = None
    action: Literal["copy", "distil", "skip"]
    reason: str | None = Field(default=None, description="Why it is distilled or skipped.")
    translations: list[Translation] = Field(default_factory=list)
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="What the new job is given.")
    target_method: str | None = None
    alias: str | None = None
    imported_model: str | None = Field(default=None, description="Our id of the upstream model (its fallback).")
    alias_versions: dict[str, int] = Field(default_factory=dict)
    distillation: Distillation | None = None
    local_job: str | None = None
    local_model: str | None = None
    parity: Parity | None = None
    step: Step = "alias"
    status: Literal["pending", "running", "completed", "failed", "skipped"] = "pending"
    error: dict[str, Any] | None = None


class PlanTotals(Schema):
    jobs: int
    to_copy: int
    to_distil: int
    skipped: int
    files: int
    bytes: int
    aliases: int
    upstream_calls: int = Field(description="Distillation prompts plus parity rows, at most.")
    estimated_trained_tokens: int | None
    estimated_training_seconds: float | None = Field(
        description="From this gateway's past jobs on the base model; null without one."
    )
    estimated_upstream_cost: float | None = Field(
        description="USD of the distillation calls at most, from the provider's configured prices (null: a model "
        "to distil from has no price); parity calls are not counted."
    )
    notes: list[str] = Field(default_factory=list)


class MigrationOut(Schema):
    id: str
    object: Literal["migration"] = "migration"
    provider: str
    target_provider: str
    base_model: str
    status: MigrationStatus
    totals: PlanTotals
    items: list[MigrationItem]
    error: dict[str, Any] | None
    created_at: UnixTime
    started_at: UnixTime | None
    finished_at: UnixTime | None
    switched_at: UnixTime | None


class UpstreamJob(Schema):
    id: str
    model: str
    fine_tuned_model: str | None
    status: str
    method: str
    training_file: str
    validation_file: str | None
    trained_tokens: int | None
    created_at: int


class UpstreamFile(Schema):
    id: str
    filename: str
    bytes: int
    purpose: str
    created_at: int


class UpstreamModel(Schema):
    id: str
    owned_by: str
    created: int


class UpstreamInventory(Schema):
    object: Literal["migration.source"] = "migration.source"
    provider: str
    jobs: list[UpstreamJob]
    files: list[UpstreamFile]
    models: list[UpstreamModel]
