"""Wire schemas of /v1/models (OpenAI's Model and ListModelsResponse) and of /v1/registry (aliases)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

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
    StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$"),
    Field(description="Letters, digits, '.', '_' and '-'; not 'ft:…' and no '@' (that pins a version)."),
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


class AliasVersionCreate(RequestSchema):
    targets: Annotated[list[Target], Field(min_length=1, max_length=16)]
    fallbacks: Annotated[list[ModelId], Field(max_length=8)] = Field(
        default_factory=list, description="Tried in order when the chosen target fails, times out or cools down."
    )
    guard: Guard | None = None
    note: Annotated[str, StringConstraints(max_length=1024)] | None = None
    activate: bool = Field(default=True, description="Make this version the one that answers right away.")


class AliasVersionOut(Schema):
    id: str
    object: Literal["registry.alias.version"] = "registry.alias.version"
    alias: str
    version: int
    targets: list[Target]
    fallbacks: list[str]
    guard: Guard | None
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
