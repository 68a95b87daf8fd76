"""Wire schemas of /v1/models (OpenAI's Model and ListModelsResponse) and of /v1/registry (aliases)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from app.evals.schemas import CompletionsRunDataSource
from app.kit.numbers import INT32_MAX
from app.kit.schemas import RequestSchema, Schema, UnixTime


class ModelOut(Schema):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelDeleted(Schema):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


class ModelList(Schema):
    object: Literal["list"] = "list"
    data: list[ModelOut]


AliasName = Annotated[
    str,
    StringConstraints(
        # OpenAI's ids leave an unset suffix empty: ft:gpt-3.5-turbo-0613:personal::7qTlsdhL
        pattern=r"^(?:[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}|ft:[a-zA-Z0-9._-]+(?::[a-zA-Z0-9._-]*)*:[a-zA-Z0-9._-]+)$",
        max_length=128,
    ),
    Field(
        description="Letters, digits, '.', '_' and '-', no '@' (that pins a version); or a fine-tuned model id of "
        "another provider ('ft:gpt-4o-mini-2024-07-18:acme:support:abc123'), kept as the name callers already use."
    ),
]
ModelId = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class Target(RequestSchema):
    model: ModelId = Field(description="A base or fine-tuned model id (not an alias).")
    weight: Annotated[float, Field(gt=0, le=1_000_000)] = 1.0


class Guard(RequestSchema):
    """A classifier run before the target; when its label is not allowed, the refusal answers instead."""

    model: ModelId = Field(description="A fine-tuned classifier (prompt-completion, one label per prompt).")
    allowed_labels: Annotated[list[str], Field(min_length=1, max_length=50)] = Field(
        description="Labels that let the request through, e.g. ['yes'] or ['on-topic']."
    )
    min_probability: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5, description="The allowed labels' summed probability needed to pass."
    )
    check_output: bool = Field(
        default=False,
        description="Also classify the answer before any of it is sent: a streamed answer is generated whole, "
        "checked, then sent as a stream.",
    )
    refusal: Annotated[str, StringConstraints(min_length=1, max_length=4000)] = (
        "Sorry, I can only help with questions about this service."
    )


CriterionKey = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class Gate(RequestSchema):
    """A release gate: activating the version first runs an eval on it (``alias@N``, its whole routing) and on the
    active version, and refuses (409) when the version scores too low."""

    eval_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="An eval of this project."
    )
    data_source: CompletionsRunDataSource = Field(
        description="A completions run data source without its model (source, input_messages, sampling_params): "
        "each version judged gets a run of its own with it."
    )
    # Ranges are checked below, not in the union's members: a member's error would name the member, not the field.
    min_pass_rate: float | Annotated[dict[CriterionKey, float], Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="The lowest pass rate (0-1) the version may have: one for every criterion, or by criterion name "
        "or id.",
    )
    max_regression: Annotated[float, Field(ge=0, le=100)] | None = Field(
        default=None,
        description="How many points (0-100) lower than the active version's the version's pass rate may be, on "
        "any criterion.",
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=600, description="How long the gate's runs may take; past it the gate is inconclusive (409)."
    )

    @field_validator("min_pass_rate")
    @classmethod
    def _rates(cls, value: float | dict[str, float] | None) -> float | dict[str, float] | None:
        rates = value.values() if isinstance(value, dict) else [] if value is None else [value]
        if any(not 0 <= rate <= 1 for rate in rates):
            raise ValueError("a pass rate is a number from 0 to 1")
        return value

    @model_validator(mode="after")
    def _has_a_threshold(self) -> Gate:
        if self.min_pass_rate is None and self.max_regression is None:
            raise ValueError("a gate needs min_pass_rate, max_regression or both")
        return self


class AliasVersionCreate(RequestSchema):
    targets: Annotated[list[Target], Field(min_length=1, max_length=16)]
    fallbacks: Annotated[list[ModelId], Field(max_length=8)] = Field(
        default_factory=list, description="Tried in order when the chosen target fails, times out or cools down."
    )
    guard: Guard | None = None
    gate: Gate | None = Field(
        default=None,
        description="Activating this version (promote, or activate here) runs this eval first and refuses with 409 "
        "when it fails; rollback is never gated.",
    )
    note: Annotated[str, StringConstraints(max_length=1024)] | None = None
    activate: bool = Field(
        default=True,
        description="Make this version the one that answers right away. A gated version is activated once its gate "
        "passes; when the gate fails the version is kept, inactive, and the answer is a 409.",
    )


class AliasVersionOut(Schema):
    id: str
    object: Literal["registry.alias.version"] = "registry.alias.version"
    alias: str
    version: int
    targets: list[Target]
    fallbacks: list[str]
    guard: Guard | None
    gate: Gate | None = None
    note: str | None
    created_by: str | None
    created_at: UnixTime


class AliasCreate(RequestSchema):
    name: AliasName
    description: Annotated[str, StringConstraints(max_length=1024)] | None = None


class AliasOut(Schema):
    id: str
    object: Literal["registry.alias"] = "registry.alias"
    name: str
    description: str | None
    active_version: int | None
    created_at: UnixTime
    updated_at: UnixTime


class AliasDeleted(Schema):
    id: str
    object: Literal["registry.alias.deleted"] = "registry.alias.deleted"
    name: str
    deleted: bool = True


class Promote(RequestSchema):
    version: Annotated[int, Field(ge=1, le=INT32_MAX)]


class ChangeOut(Schema):
    id: str
    object: Literal["registry.change"] = "registry.change"
    actor: str = Field(description="The API key id that made the change.")
    action: str
    alias: str
    version: int | None
    detail: dict[str, Any]
    created_at: UnixTime
