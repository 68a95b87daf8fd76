"""Base classes and field types for wire schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.kit.text import value_problems
from app.kit.time import unix

T = TypeVar("T")

# A datetime inside ftgw, Unix seconds on the wire, as OpenAI's objects carry them.
UnixTime = Annotated[datetime, PlainSerializer(unix, return_type=int, when_used="always")]


def _at_most_16_pairs(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 16:
        raise ValueError("metadata may have at most 16 key-value pairs")
    return value


# OpenAI's Metadata: up to 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]],
    AfterValidator(_at_most_16_pairs),
]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


STORABLE = {"storable": True}  # validation context: the caller has proven the input storable (see _storable)


class RequestSchema(Schema):
    """Base of every request body model: a value no backend can store (NUL, lone surrogate, infinity) anywhere in
    the raw input, extra fields and free-form dicts included, is refused with its location before anything else.

    Validated with ``context=STORABLE`` the walk is skipped: for input that orjson parsed from a body without a
    ``\\u0000`` escape (orjson refuses infinities, NaN and lone surrogates, and JSON has no raw NUL)."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is STORABLE:
            return data
        problems = [
            InitErrorDetails(type=PydanticCustomError("unstorable_value", why), loc=loc, input=None)
            for loc, why in value_problems(data)
        ]
        if problems:
            # Raised inside a validator, its errors join the request's, located under the field (param).
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return data


class ListResponse(Schema, Generic[T]):
    """OpenAI's list envelope with cursor ids (``first_id``/``last_id`` are null for an empty page)."""

    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @classmethod
    def of(cls, data: list[T], has_more: bool) -> Self:
        ids = [str(getattr(item, "id")) for item in data]  # noqa: B009 - T is any schema with an id
        return cls(data=data, first_id=ids[0] if ids else None, last_id=ids[-1] if ids else None, has_more=has_more)
